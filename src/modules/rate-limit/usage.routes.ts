import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import { rateLimitHeaders, windowRemaining } from "./headers.ts";
import { limitOf, type WindowName } from "./policy.ts";
import type { MeterResult } from "./rate-limit.service.ts";
import { type Usage, UsageSchema } from "./usage.schemas.ts";

/** A session (JWT) or an API key, in any accepted header. */
const SECURITY: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

function windowUsage(r: MeterResult, w: WindowName) {
  const limit = limitOf(r.limits, w);
  const remaining = windowRemaining(r, w);
  const used = w === "minute" ? (limit === null ? 0 : limit - (remaining ?? 0)) : w === "day" ? r.day : r.month;
  const resetsAt = w === "minute" ? r.now + r.minuteResetMs : w === "day" ? r.cal.nextDayAt : r.cal.nextMonthAt;
  return { used, limit, remaining, resets_at: new Date(resetsAt).toISOString() };
}

/** `GET /v1/usage`: the customer's current counters. Reading them consumes nothing. */
export const usageRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  app.get(
    "/v1/usage",
    {
      preHandler: platform.auth.require(),
      schema: {
        tags: ["usage"],
        summary: "Current usage and limits",
        description:
          "Minute, day and month usage of the caller's customer (shared by all its keys), the limits and when each window resets. Any key or session of the customer may read it; it does not count against the quota.",
        security: SECURITY,
        response: { 200: UsageSchema },
      },
    },
    async (request, reply): Promise<Usage> => {
      const principal = request.principal as NonNullable<typeof request.principal>;
      const r = await platform.limits.service.peek(principal.customerId);
      const h = rateLimitHeaders(r);
      if (h["RateLimit-Policy"] !== "") reply.headers(h);
      const tier = await platform.limits.customerLimits.get(principal.customerId);
      return {
        customer_id: principal.customerId,
        tier: tier.tier,
        limiter: r.source,
        minute: windowUsage(r, "minute"),
        day: windowUsage(r, "day"),
        month: windowUsage(r, "month"),
      };
    },
  );
};
