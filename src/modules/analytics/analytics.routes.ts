import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TSchema } from "typebox";
import { FIRST_INSTANT } from "../../platform/db/instants.ts";
import { errors } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  CsvSchema,
  InstructionsQuery,
  InstructionsSchema,
  RangeQuery,
  RobotsQuery,
  RobotsSchema,
  SafetyAnalyticsSchema,
  UsageQuery,
  UsageSchema,
} from "./analytics.schemas.ts";
import { type AnalyticsService, type Granularity, MAX_DAYS, type RobotProfile } from "./analytics.service.ts";
import { type Cell, toCsv, wantsCsv } from "./csv.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const DAY = 86_400_000;

export interface AnalyticsRouteOptions {
  readonly platform: Platform;
  readonly service: AnalyticsService;
}

/** 200 as JSON (the schema) or CSV (`Accept: text/csv`). */
const ok = (schema: TSchema) => ({
  content: { "application/json": { schema }, "text/csv": { schema: CsvSchema } },
});

/** A `from`/`to` query time within the years PostgreSQL stores. */
function queryTime(v: string | undefined, path: string): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  const year = d.getUTCFullYear();
  if (Number.isNaN(d.getTime()) || year < 1 || year > 9999) {
    throw errors.invalidRequest([{ in: "query", path, message: "must be a date-time in the years 0001-9999" }]);
  }
  return d;
}

/** [from, to): defaults to the last 30 days; from < to; at most `maxDays` long. */
function rangeOf(q: { from?: string; to?: string }, now: number, maxDays: number, granularity?: Granularity) {
  const to = queryTime(q.to, "/to") ?? new Date(now);
  const from = queryTime(q.from, "/from") ?? new Date(Math.max(to.getTime() - 30 * DAY, FIRST_INSTANT));
  if (!(from.getTime() < to.getTime())) {
    throw errors.invalidRequest([{ in: "query", path: "/from", message: "must be before to" }]);
  }
  if (to.getTime() - from.getTime() > maxDays * DAY) {
    const what = granularity === undefined ? "" : ` with granularity=${granularity}`;
    throw errors.invalidRequest(
      [{ in: "query", path: "/to", message: `the range may span at most ${maxDays} days${what}` }],
      `The range is too long: at most ${maxDays} days${what}.`,
    );
  }
  return { from, to };
}

function send<T>(request: FastifyRequest, reply: FastifyReply, body: T, csv: () => string): T | FastifyReply {
  if (!wantsCsv(request.headers.accept)) return body;
  return reply.type("text/csv; charset=utf-8").send(csv());
}

const ROBOT_SORT: Record<string, (r: RobotProfile) => number | string | null> = {
  requests: (r) => r.requests,
  error_rate: (r) => r.error_rate,
  p95_ms: (r) => r.p95_ms,
  last_seen: (r) => r.last_seen,
  robot_id: (r) => r.robot_id,
  mean_success_rating: (r) => r.mean_success_rating,
};

/** /v1/analytics: usage series, safety patterns, robot profiles and top instructions, from the rollups. */
export const analyticsRoutes: FastifyPluginAsyncTypebox<AnalyticsRouteOptions> = async (app, { platform, service }) => {
  // Any key or session of the customer (like GET /v1/usage); everything is scoped to its customer.
  const reader = platform.auth.require();
  const customerOf = (request: FastifyRequest) => {
    if (request.principal === undefined || request.principal === null) throw errors.unauthorized();
    return request.principal.customerId;
  };
  const freshness =
    "Counts come from rollups the analytics job updates every few seconds (ANALYTICS_ROLLUP_INTERVAL_MS), so the " +
    "last requests may be missing briefly. `Accept: text/csv` returns the same data as CSV.";

  app.get(
    "/v1/analytics/usage",
    {
      onRequest: reader,
      schema: {
        tags: ["analytics"],
        summary: "Usage time series",
        description:
          "Requests, errors, success rate and p50/p95/p99 latency (successful requests, total time) per hour or UTC day over " +
          "[from, to), optionally one series per model, robot (daily only), API key or source, with totals. Percentiles " +
          "over any range merge per-bucket DDSketches (1 % relative error), never average percentiles. Ranges are capped " +
          `at ${MAX_DAYS.day} days daily and ${MAX_DAYS.hour} days hourly (400 invalid_request beyond). ${freshness}`,
        security: SECURITY,
        querystring: UsageQuery,
        response: { 200: ok(UsageSchema) },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const granularity = q.granularity;
      if (granularity === "hour" && q.group_by === "robot") {
        throw errors.invalidRequest([
          { in: "query", path: "/group_by", message: "robot series are daily only; use granularity=day" },
        ]);
      }
      const { from, to } = rangeOf(q, platform.now(), MAX_DAYS[granularity], granularity);
      const report = await service.usage(customerOf(request), { from, to, granularity, groupBy: q.group_by });
      return send(request, reply, report, () =>
        toCsv(
          ["group", "start", "requests", "errors", "success_rate", "p50_ms", "p95_ms", "p99_ms"],
          report.series.flatMap((s) =>
            s.points.map((p): Cell[] => [
              s.group,
              p.start,
              p.requests,
              p.errors,
              p.success_rate,
              p.p50_ms,
              p.p95_ms,
              p.p99_ms,
            ]),
          ),
        ),
      );
    },
  );

  app.get(
    "/v1/analytics/safety",
    {
      onRequest: reader,
      schema: {
        tags: ["analytics"],
        summary: "Safety incident patterns",
        description:
          "Safety incidents over [from, to) (default: the last 30 days, at most 400 days) by type, severity and robot, the daily " +
          "trend, the most violated rules, actions clamped vs rejected vs stopped, the verdict mix on returned actions, and " +
          `the robots whose incidents per request rose from the first half of the range to the second. ${freshness} ` +
          "CSV: one row per (section, key, value).",
        security: SECURITY,
        querystring: RangeQuery,
        response: { 200: ok(SafetyAnalyticsSchema) },
      },
    },
    async (request, reply) => {
      const { from, to } = rangeOf(request.query, platform.now(), MAX_DAYS.day);
      const s = await service.safety(customerOf(request), { from, to });
      return send(request, reply, s, () =>
        toCsv(
          ["section", "key", "value"],
          [
            ["incidents", "total", s.incidents],
            ...s.by_type.map((x): Cell[] => ["by_type", x.key, x.count]),
            ...s.by_severity.map((x): Cell[] => ["by_severity", x.key, x.count]),
            ...s.by_robot.map((x): Cell[] => ["by_robot", x.key, x.count]),
            ...s.actions.map((x): Cell[] => ["actions", x.key, x.count]),
            ...Object.entries(s.verdicts).map(([k, v]): Cell[] => ["verdicts", k, v]),
            ...s.daily.map((x): Cell[] => ["daily", x.day, x.incidents]),
            ...s.top_rules.map((x): Cell[] => ["top_rules", `${x.violation_type}/${x.severity}`, x.count]),
            ...s.rising_robots.map((x): Cell[] => [
              "rising_robots",
              x.robot_id,
              x.rate_second_half - x.rate_first_half,
            ]),
          ],
        ),
      );
    },
  );

  app.get(
    "/v1/analytics/robots",
    {
      onRequest: reader,
      schema: {
        tags: ["analytics"],
        summary: "Per-robot profiles",
        description:
          "For each robot active in the UTC days of [from, to) (default: the last 30 days, at most 400 days): requests, error " +
          "rate, latency percentiles, safety verdict mix, mean feedback ratings, mean correction magnitude, failure reports, " +
          `first and last seen. Sorted by \`sort\`/\`order\`, paginated by \`limit\`/\`offset\`. ${freshness}`,
        security: SECURITY,
        querystring: RobotsQuery,
        response: { 200: ok(RobotsSchema) },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const { from, to } = rangeOf(q, platform.now(), MAX_DAYS.day);
      const all = await service.robots(customerOf(request), { from, to });
      const key = ROBOT_SORT[q.sort] ?? ROBOT_SORT.requests;
      const dir = q.order === "asc" ? 1 : -1;
      all.sort((a, b) => {
        const x = key?.(a) ?? null;
        const y = key?.(b) ?? null;
        // Nulls (no data for the key) last in either direction.
        if (x !== y) {
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * dir;
        }
        return a.robot_id < b.robot_id ? -1 : a.robot_id > b.robot_id ? 1 : 0;
      });
      const data = all.slice(q.offset, q.offset + q.limit);
      const next = q.offset + q.limit < all.length ? q.offset + q.limit : null;
      const body = { from: from.toISOString(), to: to.toISOString(), total: all.length, data, next_offset: next };
      return send(request, reply, body, () =>
        toCsv(
          [
            "robot_id",
            "requests",
            "errors",
            "error_rate",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "safety_pass",
            "safety_clamped",
            "safety_rejected",
            "safety_emergency_stop",
            "feedback",
            "mean_success_rating",
            "mean_safety_rating",
            "corrections",
            "mean_correction_translation",
            "mean_correction_rotation",
            "mean_correction_gripper",
            "failures",
            "first_seen",
            "last_seen",
          ],
          data.map((r): Cell[] => [
            r.robot_id,
            r.requests,
            r.errors,
            r.error_rate,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.safety.pass,
            r.safety.clamped,
            r.safety.rejected,
            r.safety.emergency_stop,
            r.feedback,
            r.mean_success_rating,
            r.mean_safety_rating,
            r.corrections,
            r.mean_correction.translation,
            r.mean_correction.rotation,
            r.mean_correction.gripper,
            r.failures,
            r.first_seen,
            r.last_seen,
          ]),
        ),
      );
    },
  );

  app.get(
    "/v1/analytics/instructions",
    {
      onRequest: reader,
      schema: {
        tags: ["analytics"],
        summary: "Top instructions",
        description:
          "Instructions over the UTC days of [from, to) (default: the last 30 days, at most 400 days), deduplicated by the " +
          "SHA-256 of their normalized form (trimmed, case-folded, whitespace collapsed), with count, success and failure " +
          "rates, mean success rating from feedback, latency, first and last seen. The text is shown only when instruction " +
          `logging stored it (LOG_INSTRUCTIONS and the customer's consent, docs/privacy.md); otherwise the hash alone. ${freshness}`,
        security: SECURITY,
        querystring: InstructionsQuery,
        response: { 200: ok(InstructionsSchema) },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const { from, to } = rangeOf(q, platform.now(), MAX_DAYS.day);
      const data = await service.instructions(customerOf(request), { from, to, limit: q.limit, sort: q.sort });
      const body = { from: from.toISOString(), to: to.toISOString(), sort: q.sort, data };
      return send(request, reply, body, () =>
        toCsv(
          [
            "instruction_key",
            "instruction",
            "count",
            "errors",
            "success_rate",
            "failure_reports",
            "failure_rate",
            "mean_success_rating",
            "ratings",
            "p50_ms",
            "p95_ms",
            "first_seen",
            "last_seen",
          ],
          data.map((r): Cell[] => [
            r.instruction_key,
            r.instruction,
            r.count,
            r.errors,
            r.success_rate,
            r.failure_reports,
            r.failure_rate,
            r.mean_success_rating,
            r.ratings,
            r.p50_ms,
            r.p95_ms,
            r.first_seen,
            r.last_seen,
          ]),
        ),
      );
    },
  );
};
