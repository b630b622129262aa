import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { usageCounters } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { rateLimitHeaders, windowRemaining } from "./headers.ts";
import { limitOf, type WindowName } from "./policy.ts";
import type { MeterResult } from "./rate-limit.service.ts";
import {
  type StreamTimeResult,
  type StreamWindow,
  streamLimitMs,
  streamRemainingMs,
  streamUsedMs,
} from "./stream-time.ts";
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

function streamUsage(r: StreamTimeResult, w: StreamWindow) {
  const s = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));
  return {
    used_s: Math.floor(streamUsedMs(r, w) / 1000),
    limit_s: s(streamLimitMs(r, w)),
    remaining_s: s(streamRemainingMs(r, w)),
    resets_at: new Date(w === "stream_day" ? r.cal.nextDayAt : r.cal.nextMonthAt).toISOString(),
  };
}

/** `GET /v1/usage`: the customer's current counters. Reading them consumes nothing. */
export const usageRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  platform.exports.register(
    tableSection({
      name: "usage",
      file: "usage.ndjson",
      table: usageCounters,
      customer: usageCounters.customerId,
      key: usageCounters.month,
      batchRows: platform.config.exports.batchRows,
    }),
  );
  app.get(
    "/v1/usage",
    {
      onRequest: platform.auth.require(),
      schema: {
        tags: ["usage"],
        summary: "Current usage and limits",
        description:
          "Minute, day and month usage of the caller's customer (shared by all its keys), the limits and when each window resets; and the stream time (robot-seconds of native and openpi sessions) used and left per UTC day and month. Any key or session of the customer may read it; it does not count against the quota.",
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
      const stream = await platform.limits.streamTime.peek(principal.customerId);
      return {
        customer_id: principal.customerId,
        tier: tier.tier,
        limiter: r.source,
        minute: windowUsage(r, "minute"),
        day: windowUsage(r, "day"),
        month: windowUsage(r, "month"),
        stream_day: streamUsage(stream, "stream_day"),
        stream_month: streamUsage(stream, "stream_month"),
        stream_max_fps: stream.allowance.maxFps,
      };
    },
  );
};
