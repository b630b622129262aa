import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { listReadEntry } from "../../platform/audit.ts";
import type { Platform } from "../../platform/platform.ts";
import type { SafetyRepo } from "../safety/safety.repo.ts";
import { incidentView, listIncidentPage } from "../safety/safety.routes.ts";
import type { SafetyService } from "../safety/safety.service.ts";
import { AdminIncidentPageSchema, AdminIncidentQuery, StopsQuery, StopsSchema } from "./admin-safety.schemas.ts";
import { DeepHealthSchema } from "./health.schemas.ts";
import { deepHealth } from "./health.service.ts";
import type { RevenueRepo } from "./revenue.repo.ts";
import type { StatsRepo } from "./stats.repo.ts";
import { RevenueQuery, RevenueSchema, StatsQuery, StatsSchema } from "./stats.schemas.ts";

const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });
const DENIED = {
  400: PROBLEM("invalid_request: a query parameter out of range, malformed or unknown."),
  401: PROBLEM("unauthorized: no or an invalid credential."),
  403: PROBLEM("forbidden: not a superuser (a customer's `admin` key included)."),
};
const OPERATORS = " Superusers only (403 `forbidden` otherwise, a customer's `admin`-scope key included).";

export interface AdminStatsRouteOptions {
  readonly platform: Platform;
  readonly stats: StatsRepo;
  readonly revenue: RevenueRepo;
  readonly safetyRepo: SafetyRepo;
  readonly safety: SafetyService;
}

/** The operators' statistics, revenue, cross-customer safety and deep health (docs/admin.md). */
export const adminStatsRoutes: FastifyPluginAsyncTypebox<AdminStatsRouteOptions> = async (app, opts) => {
  const { platform, stats, revenue, safetyRepo, safety } = opts;
  const superuser = platform.auth.require({ superuser: true });
  const tags = ["admin"];

  app.get(
    "/admin/stats",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Platform statistics",
        description:
          "Users; customers by tier, new (7 / 30 days) and active (24 h / 30 days); requests and error rate today " +
          "and this month; inference latency p50/p95/p99 today; the top customers by requests this month " +
          "(`limit`, 1 to 100, default 10); safety incidents today by severity. Read from the analytics rollups " +
          "and the usage counters, never the raw logs: `rollups.watermark_at` says up to which log row they " +
          "count. Days and months are UTC. The read is audited (`admin_stats.read`: the top customers' names " +
          `and emails are customer data).${OPERATORS}`,
        security: SECURITY_JWT,
        querystring: StatsQuery,
        response: { 200: StatsSchema, ...DENIED },
      },
    },
    async (request) => {
      const s = await stats.stats(platform.now(), request.query.limit);
      await platform.audit.recordSuperuserRead(request, {
        action: "admin_stats.read",
        targetType: "admin_stats",
        targetId: null,
        customerId: null,
        details: { top_customers: s.top_customers.map((c) => c.customer_id) },
      });
      return s;
    },
  );

  app.get(
    "/admin/stats/revenue",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Revenue: MRR, ARR and 30-day movement",
        description:
          "Monthly recurring revenue per currency (minor units, never converted), by tier, ARR (MRR x 12), new / " +
          "expansion / contraction / churned MRR over the last 30 days and the past-due MRR at risk, from our own " +
          "copy of the subscriptions (the `subscription_changes` history the billing webhook and reconciliation " +
          `write); never a Stripe call. The formula is in docs/admin.md, "Revenue".${OPERATORS}`,
        security: SECURITY_JWT,
        querystring: RevenueQuery,
        response: { 200: RevenueSchema, ...DENIED },
      },
    },
    async () => revenue.report(platform.now()),
  );

  app.get(
    "/admin/safety/incidents",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Safety incidents of every customer",
        description:
          "The incidents of `GET /v1/safety/incidents` across customers, each with its `customer_id`, newest " +
          "first. The same filters (robot_id, severity and type as comma-separated lists, [from, to)) plus " +
          "`customer_id`; `limit` default 50, max 500; pass `next_cursor` back as `cursor`. 400 `invalid_request` " +
          `for a malformed cursor, id, list or time. The read is audited (\`safety_incident.read\`).${OPERATORS}`,
        security: SECURITY_JWT,
        querystring: AdminIncidentQuery,
        response: { 200: AdminIncidentPageSchema, ...DENIED },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await listIncidentPage(safetyRepo, q.customer_id ?? null, q);
      await platform.audit.recordSuperuserRead(
        request,
        listReadEntry("safety_incident.read", "safety_incident", q, page.items.length),
      );
      return {
        data: page.items.map((i) => ({ customer_id: i.customerId, ...incidentView(i) })),
        next_cursor: page.nextCursor,
      };
    },
  );

  app.get(
    "/admin/safety/stops",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Robots under emergency stop, every customer",
        description:
          "Every robot whose emergency stop is in force, with the stop's time, reason and inference id. Read from " +
          "Redis (every instance's stops) when configured, else from this process. `limit` 1 to 5000 (default " +
          `1000); \`truncated\` says more exist. The read is audited (\`safety_stop.read\`).${OPERATORS}`,
        security: SECURITY_JWT,
        querystring: StopsQuery,
        response: { 200: StopsSchema, ...DENIED },
      },
    },
    async (request) => {
      const limit = request.query.limit;
      const all = await safety.stoppedEverywhere(limit + 1);
      const data = all
        .slice(0, limit)
        .sort((a, b) => a.customerId.localeCompare(b.customerId) || a.robotId.localeCompare(b.robotId))
        .map((s) => ({
          customer_id: s.customerId,
          robot_id: s.robotId,
          at: s.record.at,
          reason: s.record.reason,
          inference_id: s.record.inferenceId ?? null,
        }));
      await platform.audit.recordSuperuserRead(request, {
        action: "safety_stop.read",
        targetType: "robot",
        targetId: null,
        customerId: null,
        details: { entries: data.length },
      });
      return { data, truncated: all.length > limit };
    },
  );

  app.get(
    "/admin/monitoring/health",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Deep health",
        description:
          "Everything `/health` checks, with details: database round trip, pool usage and the inference_logs " +
          "partitions created ahead; Redis round trip; each model backend and remote endpoint (circuit, " +
          "failures, latency); batch writers (buffered, spilled, replayed, dropped); email and billing checks; " +
          "background jobs (last run, next run, last error). 200 while ok or degraded, 503 when down, like " +
          `\`/health\`. The numbers are this instance's.${OPERATORS}`,
        security: SECURITY_JWT,
        querystring: RevenueQuery,
        response: { 200: DeepHealthSchema, 503: DeepHealthSchema, ...DENIED },
      },
    },
    async (_request, reply) => {
      const h = await deepHealth(platform);
      return reply.code(h.status === "down" ? 503 : 200).send(h);
    },
  );
};
