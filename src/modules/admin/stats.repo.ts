import { sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { decodeSketch, roundMs, Sketch } from "../analytics/sketch.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;
const iso = (v: Date | string | null | undefined) => (v === null || v === undefined ? null : new Date(v).toISOString());
const rate = (errors: number, requests: number) =>
  requests === 0 ? null : Math.round((errors / requests) * 1e6) / 1e6;

export interface PlatformStats {
  readonly generated_at: string;
  readonly rollups: { readonly watermark_at: string | null; readonly updated_at: string | null };
  readonly users: number;
  readonly customers: {
    readonly total: number;
    readonly by_tier: Record<string, number>;
    readonly new_7d: number;
    readonly new_30d: number;
    readonly active_24h: number;
    readonly active_30d: number;
  };
  readonly requests: {
    readonly today: { readonly requests: number; readonly errors: number; readonly error_rate: number | null };
    readonly month: { readonly requests: number; readonly errors: number; readonly error_rate: number | null };
  };
  readonly latency_today_ms: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  readonly top_customers: {
    readonly customer_id: string;
    readonly name: string;
    readonly email: string;
    readonly tier: string;
    readonly requests_month: number;
  }[];
  readonly incidents_today: { readonly total: number; readonly by_severity: Record<string, number> };
}

/** UTC midnight of `ms`'s day. */
export const dayStart = (ms: number) => Math.floor(ms / DAY) * DAY;
/** First instant of `ms`'s UTC month. */
export const monthStart = (ms: number) => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
};
const dateOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * The platform-wide numbers of `GET /admin/stats`, from the analytics rollups (hourly and daily,
 * indexed by time and customer), the durable usage counters and indexed counts; never a scan of
 * inference_logs. The rollups trail the logs by the analytics job's interval: the watermark says
 * up to which log row they count.
 */
export class StatsRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async stats(nowMs: number, top: number): Promise<PlatformStats> {
    const today = dayStart(nowMs);
    const month = monthStart(nowMs);
    const d7 = new Date(nowMs - 7 * DAY);
    const d30 = new Date(nowMs - 30 * DAY);
    // Hourly buckets overlapping the last 24 hours; daily ones of the last 30 days (today included).
    const since24h = new Date(Math.floor((nowMs - 24 * HOUR) / HOUR) * HOUR);
    const since30d = dateOf(today - 29 * DAY);
    const db = this.db;
    const [counts, tiers, active24, active30, todayRows, monthRow, topRows, incidents, mark] = await Promise.all([
      db.execute(sql`select (select count(*) from users)::int as users,
          (select count(*) from customers where created_at >= ${d7})::int as new_7d,
          (select count(*) from customers where created_at >= ${d30})::int as new_30d`),
      db.execute(sql`select tier::text as tier, count(*)::int as n from customers group by tier`),
      // Index-only scans of (hour | day, customer_id): a customer with a rollup row in the range.
      db.execute(sql`select count(*)::int as n from (select distinct customer_id from usage_hourly_metrics
          where hour >= ${since24h}) a`),
      db.execute(sql`select count(*)::int as n from (select distinct customer_id from robot_performance_metrics
          where day >= ${since30d}) a`),
      db.execute(sql`select requests::float8 as requests, errors::float8 as errors, latency_total as latency
          from usage_hourly_metrics where hour >= ${new Date(today)}`),
      db.execute(sql`select coalesce(sum(requests), 0)::float8 as requests, coalesce(sum(errors), 0)::float8 as errors
          from robot_performance_metrics where day >= ${dateOf(month)}`),
      db.execute(sql`select u.customer_id::text as customer_id, c.name, c.email, c.tier::text as tier,
          u.requests::float8 as requests
          from usage_counters u join customers c on c.id = u.customer_id
          where u.month = ${dateOf(month)} and u.requests > 0
          order by u.requests desc, u.customer_id desc limit ${top}`),
      db.execute(sql`select severity, count(*)::int as n from safety_incidents
          where at >= ${new Date(today)} group by severity`),
      db.execute(sql`select row_at, updated_at from analytics_watermarks where name = 'inference_logs'`),
    ]);
    const c = rowsOf<{ users: number; new_7d: number; new_30d: number }>(counts)[0];
    const byTier: Record<string, number> = { free: 0, pro: 0, enterprise: 0 };
    for (const r of rowsOf<{ tier: string; n: number }>(tiers)) byTier[r.tier] = r.n;
    let reqToday = 0;
    let errToday = 0;
    const sketch = new Sketch();
    for (const r of rowsOf<{ requests: number; errors: number; latency: Uint8Array | null }>(todayRows)) {
      reqToday += r.requests;
      errToday += r.errors;
      sketch.merge(decodeSketch(r.latency));
    }
    const m = rowsOf<{ requests: number; errors: number }>(monthRow)[0] ?? { requests: 0, errors: 0 };
    const bySeverity: Record<string, number> = { low: 0, medium: 0, high: 0, critical: 0 };
    for (const r of rowsOf<{ severity: string; n: number }>(incidents)) bySeverity[r.severity] = r.n;
    const w = rowsOf<{ row_at: Date | string | null; updated_at: Date | string | null }>(mark)[0];
    return {
      generated_at: new Date(nowMs).toISOString(),
      rollups: {
        // -infinity is the job's start position: nothing counted yet.
        watermark_at: w === undefined || String(w.row_at).includes("infinity") ? null : iso(w.row_at),
        updated_at: iso(w?.updated_at),
      },
      users: c?.users ?? 0,
      customers: {
        total: Object.values(byTier).reduce((a, b) => a + b, 0),
        by_tier: byTier,
        new_7d: c?.new_7d ?? 0,
        new_30d: c?.new_30d ?? 0,
        active_24h: rowsOf<{ n: number }>(active24)[0]?.n ?? 0,
        active_30d: rowsOf<{ n: number }>(active30)[0]?.n ?? 0,
      },
      requests: {
        today: { requests: reqToday, errors: errToday, error_rate: rate(errToday, reqToday) },
        month: { requests: m.requests, errors: m.errors, error_rate: rate(m.errors, m.requests) },
      },
      latency_today_ms: {
        p50: roundMs(sketch.quantile(0.5)),
        p95: roundMs(sketch.quantile(0.95)),
        p99: roundMs(sketch.quantile(0.99)),
      },
      top_customers: rowsOf<{ customer_id: string; name: string; email: string; tier: string; requests: number }>(
        topRows,
      ).map((r) => ({
        customer_id: r.customer_id,
        name: r.name,
        email: r.email,
        tier: r.tier,
        requests_month: r.requests,
      })),
      incidents_today: { total: Object.values(bySeverity).reduce((a, b) => a + b, 0), by_severity: bySeverity },
    };
  }
}
