import { sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { NIL_UUID } from "./rollups.repo.ts";
import { decodeSketch, roundMs, Sketch } from "./sketch.ts";

/** A sketch column as the driver returns it (bytea). */
type SketchBytes = Uint8Array | null;

export type Granularity = "hour" | "day";
export type GroupBy = "model" | "robot" | "api_key" | "source";

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** Range caps: a daily series spans at most 400 days, an hourly one 31 days. */
export const MAX_DAYS = { day: 400, hour: 31 } as const;

export interface Stats {
  requests: number;
  errors: number;
  success_rate: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

export interface UsagePoint extends Stats {
  start: string;
}

export interface UsageSeries {
  group: string | null;
  points: UsagePoint[];
  totals: Stats;
}

export interface UsageReport {
  from: string;
  to: string;
  granularity: Granularity;
  group_by: GroupBy | null;
  series: UsageSeries[];
  totals: Stats;
}

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

class Acc {
  requests = 0;
  errors = 0;
  sketch = new Sketch();

  add(requests: number, errors: number, latency: Sketch | null): void {
    this.requests += requests;
    this.errors += errors;
    this.sketch.merge(latency);
  }

  stats(): Stats {
    return {
      requests: this.requests,
      errors: this.errors,
      success_rate: this.requests === 0 ? null : round4((this.requests - this.errors) / this.requests),
      p50_ms: roundMs(this.sketch.quantile(0.5)),
      p95_ms: roundMs(this.sketch.quantile(0.95)),
      p99_ms: roundMs(this.sketch.quantile(0.99)),
    };
  }
}

const round4 = (v: number) => Math.round(v * 10_000) / 10_000;
const ratio = (a: number, b: number) => (b === 0 ? null : round4(a / b));
const dayStart = (ms: number) => Math.floor(ms / DAY) * DAY;
const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** Which UTC days a range [from, to) touches: [first, last] as YYYY-MM-DD. */
function days(from: Date, to: Date) {
  return { first: isoDay(from.getTime()), last: isoDay(to.getTime() - 1) };
}

export interface RobotProfile {
  robot_id: string;
  requests: number;
  errors: number;
  error_rate: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  safety: { pass: number; clamped: number; rejected: number; emergency_stop: number };
  feedback: number;
  mean_success_rating: number | null;
  mean_safety_rating: number | null;
  corrections: number;
  mean_correction: { translation: number | null; rotation: number | null; gripper: number | null };
  failures: number;
  first_seen: string | null;
  last_seen: string | null;
}

export type RobotSort = "requests" | "error_rate" | "p95_ms" | "last_seen" | "robot_id" | "mean_success_rating";

export type InstructionSort = "count" | "failure_rate" | "rating";

export interface InstructionStats {
  instruction_key: string;
  instruction: string | null;
  count: number;
  errors: number;
  success_rate: number | null;
  failure_reports: number;
  failure_rate: number | null;
  mean_success_rating: number | null;
  ratings: number;
  p50_ms: number | null;
  p95_ms: number | null;
  first_seen: string | null;
  last_seen: string | null;
}

const iso = (d: unknown) => (d === null || d === undefined ? null : new Date(d as string).toISOString());

/** Reads the rollup tables (and safety_incidents) for the analytics routes; framework-free. */
export class AnalyticsService {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /**
   * Time series of one customer. Daily series by model or robot (or ungrouped) come from
   * robot_performance_metrics, the others from usage_hourly_metrics; latency percentiles merge the
   * buckets' sketches. Buckets without requests are left out.
   */
  async usage(
    customerId: string,
    q: { from: Date; to: Date; granularity: Granularity; groupBy: GroupBy | undefined },
  ): Promise<UsageReport> {
    const daily =
      q.granularity === "day" && (q.groupBy === undefined || q.groupBy === "model" || q.groupBy === "robot");
    let rows: { start: number; group: string | null; requests: number; errors: number; latency: SketchBytes | null }[];
    if (daily) {
      const { first, last } = days(q.from, q.to);
      const g = q.groupBy === "robot" ? sql`robot_id` : q.groupBy === "model" ? sql`model` : sql`null::text`;
      const res = await this.db.execute(sql`select day::text as day, ${g} as grp, requests::float8 as requests,
          errors::float8 as errors, latency_total as latency
        from robot_performance_metrics
        where customer_id = ${customerId}::uuid and day >= ${first}::date and day <= ${last}::date`);
      rows = rowsOf<{ day: string; grp: string | null; requests: number; errors: number; latency: SketchBytes | null }>(
        res,
      ).map((r) => ({
        start: Date.parse(`${r.day}T00:00:00Z`),
        group: r.grp === "" ? null : r.grp,
        requests: Number(r.requests),
        errors: Number(r.errors),
        latency: r.latency,
      }));
    } else {
      const g =
        q.groupBy === "api_key"
          ? sql`api_key_id::text`
          : q.groupBy === "source"
            ? sql`source`
            : q.groupBy === "model"
              ? sql`model`
              : sql`null::text`;
      const start = q.granularity === "day" ? dayStart(q.from.getTime()) : Math.floor(q.from.getTime() / HOUR) * HOUR;
      const res = await this.db.execute(sql`select (extract(epoch from hour) * 1000)::float8 as at, ${g} as grp,
          requests::float8 as requests, errors::float8 as errors, latency_total as latency
        from usage_hourly_metrics
        where customer_id = ${customerId}::uuid and hour >= ${new Date(start).toISOString()}::timestamptz
          and hour < ${q.to.toISOString()}::timestamptz`);
      rows = rowsOf<{ at: number; grp: string | null; requests: number; errors: number; latency: SketchBytes | null }>(
        res,
      ).map((r) => ({
        start: q.granularity === "day" ? dayStart(Number(r.at)) : Number(r.at),
        group: r.grp === NIL_UUID ? null : r.grp,
        requests: Number(r.requests),
        errors: Number(r.errors),
        latency: r.latency,
      }));
    }
    const series = new Map<string, { group: string | null; points: Map<number, Acc>; totals: Acc }>();
    const totals = new Acc();
    for (const r of rows) {
      const sk = decodeSketch(r.latency);
      const id = r.group ?? "\u0000";
      let s = series.get(id);
      if (s === undefined) {
        s = { group: r.group, points: new Map(), totals: new Acc() };
        series.set(id, s);
      }
      let p = s.points.get(r.start);
      if (p === undefined) {
        p = new Acc();
        s.points.set(r.start, p);
      }
      p.add(r.requests, r.errors, sk);
      s.totals.add(r.requests, r.errors, sk);
      totals.add(r.requests, r.errors, sk);
    }
    return {
      from: q.from.toISOString(),
      to: q.to.toISOString(),
      granularity: q.granularity,
      group_by: q.groupBy ?? null,
      series: [...series.values()]
        .sort((a, b) => b.totals.requests - a.totals.requests || String(a.group).localeCompare(String(b.group)))
        .map((s) => ({
          group: s.group,
          points: [...s.points.entries()]
            .sort((a, b) => a[0] - b[0])
            .map(([start, acc]) => ({ start: new Date(start).toISOString(), ...acc.stats() })),
          totals: s.totals.stats(),
        })),
      totals: totals.stats(),
    };
  }

  /** Per-robot profiles over the UTC days of [from, to), from robot_performance_metrics. */
  async robots(customerId: string, q: { from: Date; to: Date }): Promise<RobotProfile[]> {
    const { first, last } = days(q.from, q.to);
    const res = await this.db.execute(sql`select robot_id, requests::float8 as requests, errors::float8 as errors,
        safety_pass::float8 as pass, safety_clamped::float8 as clamped, safety_rejected::float8 as rejected,
        safety_emergency_stop::float8 as estop, latency_total as latency, feedback_count::float8 as feedback,
        success_rating_sum::float8 as srs, success_rating_count::float8 as src,
        safety_rating_sum::float8 as sfs, safety_rating_count::float8 as sfc, corrections::float8 as corrections,
        correction_translation_sum as cts, correction_rotation_sum as crs, correction_gripper_sum as cgs,
        failures::float8 as failures, first_seen, last_seen
      from robot_performance_metrics
      where customer_id = ${customerId}::uuid and robot_id <> '' and day >= ${first}::date and day <= ${last}::date`);
    type Row = Record<string, number> & {
      robot_id: string;
      latency: SketchBytes | null;
      first_seen: unknown;
      last_seen: unknown;
    };
    const by = new Map<string, { sums: Record<string, number>; sketch: Sketch; first: number; last: number }>();
    for (const r of rowsOf<Row>(res)) {
      let e = by.get(r.robot_id);
      if (e === undefined) {
        e = { sums: {}, sketch: new Sketch(), first: Number.POSITIVE_INFINITY, last: Number.NEGATIVE_INFINITY };
        by.set(r.robot_id, e);
      }
      for (const k of [
        "requests",
        "errors",
        "pass",
        "clamped",
        "rejected",
        "estop",
        "feedback",
        "srs",
        "src",
        "sfs",
        "sfc",
        "corrections",
        "cts",
        "crs",
        "cgs",
        "failures",
      ]) {
        e.sums[k] = (e.sums[k] ?? 0) + Number(r[k] ?? 0);
      }
      e.sketch.merge(decodeSketch(r.latency));
      if (r.first_seen !== null) e.first = Math.min(e.first, new Date(r.first_seen as string).getTime());
      if (r.last_seen !== null) e.last = Math.max(e.last, new Date(r.last_seen as string).getTime());
    }
    return [...by.entries()].map(([robotId, e]) => {
      const s = (k: string) => e.sums[k] ?? 0;
      return {
        robot_id: robotId,
        requests: s("requests"),
        errors: s("errors"),
        error_rate: ratio(s("errors"), s("requests")),
        p50_ms: roundMs(e.sketch.quantile(0.5)),
        p95_ms: roundMs(e.sketch.quantile(0.95)),
        p99_ms: roundMs(e.sketch.quantile(0.99)),
        safety: { pass: s("pass"), clamped: s("clamped"), rejected: s("rejected"), emergency_stop: s("estop") },
        feedback: s("feedback"),
        mean_success_rating: ratio(s("srs"), s("src")),
        mean_safety_rating: ratio(s("sfs"), s("sfc")),
        corrections: s("corrections"),
        mean_correction: {
          translation: ratio(s("cts"), s("corrections")),
          rotation: ratio(s("crs"), s("corrections")),
          gripper: ratio(s("cgs"), s("corrections")),
        },
        failures: s("failures"),
        first_seen: Number.isFinite(e.first) ? new Date(e.first).toISOString() : null,
        last_seen: Number.isFinite(e.last) ? new Date(e.last).toISOString() : null,
      };
    });
  }

  /**
   * Top instructions over the UTC days of [from, to): sums per normalized-instruction hash in SQL,
   * ordered and cut to `limit` there; then the latency sketches of those only.
   */
  async instructions(
    customerId: string,
    q: { from: Date; to: Date; limit: number; sort: InstructionSort },
  ): Promise<InstructionStats[]> {
    const { first, last } = days(q.from, q.to);
    const order =
      q.sort === "count"
        ? sql`requests desc`
        : q.sort === "failure_rate"
          ? sql`(errors + failures) / requests desc, requests desc`
          : sql`case when src = 0 then null else srs / src end asc nulls last, requests desc`;
    const res = await this.db.execute(sql`select instruction_key, requests, errors, failures, srs, src, instruction,
        first_seen, last_seen from (
          select instruction_key, sum(requests)::float8 as requests, sum(errors)::float8 as errors,
            sum(failures)::float8 as failures, sum(success_rating_sum)::float8 as srs,
            sum(success_rating_count)::float8 as src, min(first_seen) as first_seen, max(last_seen) as last_seen,
            (array_agg(instruction order by day desc) filter (where instruction is not null))[1] as instruction
          from instruction_analytics
          where customer_id = ${customerId}::uuid and day >= ${first}::date and day <= ${last}::date
          group by instruction_key) s
        where requests > 0
        order by ${order}, instruction_key limit ${q.limit}`);
    const rows = rowsOf<{
      instruction_key: string;
      requests: number;
      errors: number;
      failures: number;
      srs: number;
      src: number;
      instruction: string | null;
      first_seen: unknown;
      last_seen: unknown;
    }>(res);
    const sketches = new Map<string, Sketch>();
    if (rows.length > 0) {
      const keys = JSON.stringify(rows.map((r) => r.instruction_key));
      const lat = await this.db.execute(sql`select instruction_key, latency_total as latency from instruction_analytics
        where customer_id = ${customerId}::uuid and day >= ${first}::date and day <= ${last}::date
          and instruction_key in (select jsonb_array_elements_text(${keys}::jsonb))`);
      for (const r of rowsOf<{ instruction_key: string; latency: SketchBytes | null }>(lat)) {
        let s = sketches.get(r.instruction_key);
        if (s === undefined) {
          s = new Sketch();
          sketches.set(r.instruction_key, s);
        }
        s.merge(decodeSketch(r.latency));
      }
    }
    return rows.map((r) => {
      const n = Number(r.requests);
      const sk = sketches.get(r.instruction_key) ?? new Sketch();
      return {
        instruction_key: r.instruction_key,
        instruction: r.instruction,
        count: n,
        errors: Number(r.errors),
        success_rate: ratio(n - Number(r.errors), n),
        failure_reports: Number(r.failures),
        failure_rate: ratio(Math.min(n, Number(r.errors) + Number(r.failures)), n),
        mean_success_rating: ratio(Number(r.srs), Number(r.src)),
        ratings: Number(r.src),
        p50_ms: roundMs(sk.quantile(0.5)),
        p95_ms: roundMs(sk.quantile(0.95)),
        first_seen: iso(r.first_seen),
        last_seen: iso(r.last_seen),
      };
    });
  }

  /** Incident patterns over [from, to) from safety_incidents, and the verdict mix from the rollups. */
  async safety(customerId: string, q: { from: Date; to: Date }) {
    const f = q.from.toISOString();
    const t = q.to.toISOString();
    const where = sql`customer_id = ${customerId}::uuid and at >= ${f}::timestamptz and at < ${t}::timestamptz`;
    const counts = async (col: string, limit = 100) =>
      rowsOf<{ key: string; count: number }>(
        await this.db.execute(sql`select ${sql.identifier(col)} as key, count(*)::float8 as count
          from safety_incidents where ${where} group by 1 order by 2 desc, 1 limit ${limit}`),
      ).map((r) => ({ key: r.key, count: Number(r.count) }));
    const byType = await counts("violation_type");
    const bySeverity = await counts("severity");
    const byRobot = await counts("robot_id", 20);
    const actions = await counts("action_taken");
    const trend = rowsOf<{ day: string; count: number }>(
      await this.db.execute(sql`select to_char(date_trunc('day', at at time zone 'UTC'), 'YYYY-MM-DD') as day,
          count(*)::float8 as count from safety_incidents where ${where} group by 1 order by 1`),
    ).map((r) => ({ day: r.day, incidents: Number(r.count) }));
    const rules = rowsOf<{ violation_type: string; severity: string; count: number }>(
      await this.db.execute(sql`select violation_type, severity, count(*)::float8 as count from safety_incidents
          where ${where} group by 1, 2 order by 3 desc, 1, 2 limit 10`),
    ).map((r) => ({ violation_type: r.violation_type, severity: r.severity, count: Number(r.count) }));
    const { first, last } = days(q.from, q.to);
    const verdictRows = rowsOf<Record<string, number>>(
      await this.db.execute(sql`select coalesce(sum(safety_pass), 0)::float8 as pass,
          coalesce(sum(safety_clamped), 0)::float8 as clamped, coalesce(sum(safety_rejected), 0)::float8 as rejected,
          coalesce(sum(safety_emergency_stop), 0)::float8 as emergency_stop
        from robot_performance_metrics
        where customer_id = ${customerId}::uuid and day >= ${first}::date and day <= ${last}::date`),
    );
    const v = verdictRows[0] ?? {};
    // Rising: incidents per request in the second half of the range against the first half.
    const mid = new Date((q.from.getTime() + q.to.getTime()) / 2);
    const m = mid.toISOString();
    const halves = rowsOf<{ robot_id: string; a: number; b: number }>(
      await this.db.execute(sql`select robot_id, count(*) filter (where at < ${m}::timestamptz)::float8 as a,
          count(*) filter (where at >= ${m}::timestamptz)::float8 as b
        from safety_incidents where ${where} group by 1`),
    );
    const midDay = isoDay(mid.getTime());
    const reqs = new Map(
      rowsOf<{ robot_id: string; a: number; b: number }>(
        await this.db.execute(sql`select robot_id,
            coalesce(sum(requests) filter (where day < ${midDay}::date), 0)::float8 as a,
            coalesce(sum(requests) filter (where day >= ${midDay}::date), 0)::float8 as b
          from robot_performance_metrics
          where customer_id = ${customerId}::uuid and robot_id <> '' and day >= ${first}::date and day <= ${last}::date
          group by 1`),
      ).map((r) => [r.robot_id, r]),
    );
    const rising = halves
      .map((h) => {
        const r = reqs.get(h.robot_id);
        const before = ratio(Number(h.a), Math.max(1, Number(r?.a ?? 0))) ?? 0;
        const after = ratio(Number(h.b), Math.max(1, Number(r?.b ?? 0))) ?? 0;
        return {
          robot_id: h.robot_id,
          incidents_first_half: Number(h.a),
          incidents_second_half: Number(h.b),
          rate_first_half: before,
          rate_second_half: after,
        };
      })
      .filter((x) => x.rate_second_half > x.rate_first_half)
      .sort((a, b) => b.rate_second_half - b.rate_first_half - (a.rate_second_half - a.rate_first_half))
      .slice(0, 10);
    return {
      from: f,
      to: t,
      incidents: byType.reduce((n, x) => n + x.count, 0),
      by_type: byType,
      by_severity: bySeverity,
      by_robot: byRobot,
      actions,
      verdicts: {
        pass: Number(v.pass ?? 0),
        clamped: Number(v.clamped ?? 0),
        rejected: Number(v.rejected ?? 0),
        emergency_stop: Number(v.emergency_stop ?? 0),
      },
      daily: trend,
      top_rules: rules,
      rising_robots: rising,
    };
  }
}
