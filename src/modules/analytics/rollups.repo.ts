import { type SQL, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { analyticsWatermarks } from "../../platform/db/schema/index.ts";
import type { Pseudonymizer } from "../../platform/pseudonym.ts";
import {
  addFeedback,
  addLog,
  dayOf,
  emptyMeasures,
  type FeedbackFact,
  fromStored,
  hourOf,
  type LogFact,
  type Measures,
  mergeMeasures,
  type StoredMeasures,
  toStored,
} from "./measures.ts";

/** api_key_id of hourly rows for requests made with a user session (a key column cannot be null). */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

interface DailyKey {
  customerId: string;
  day: string;
  robotId: string;
  model: string;
}
interface HourlyKey {
  customerId: string;
  hour: Date;
  model: string;
  source: string;
  apiKeyId: string;
}
interface InstructionKey {
  customerId: string;
  instructionKey: string;
  day: string;
}

interface Entry<K> {
  key: K;
  m: Measures;
  instruction?: string | null;
}

/** Rows of one job step (or a rebuild) aggregated in memory, then merged into the rollup tables. */
export class RollupBatch {
  readonly daily = new Map<string, Entry<DailyKey>>();
  readonly hourly = new Map<string, Entry<HourlyKey>>();
  readonly instructions = new Map<string, Entry<InstructionKey>>();
  logs = 0;
  feedback = 0;

  private static entry<K>(map: Map<string, Entry<K>>, id: string, key: () => K): Entry<K> {
    let e = map.get(id);
    if (e === undefined) {
      e = { key: key(), m: emptyMeasures() };
      map.set(id, e);
    }
    return e;
  }

  private entries(
    customerId: string,
    atMs: number,
    robotId: string | null,
    model: string,
    source: string,
    apiKeyId: string | null,
    instructionKey: string | null,
  ) {
    const day = dayOf(atMs);
    const hour = hourOf(atMs);
    const robot = robotId ?? "";
    const key = apiKeyId ?? NIL_UUID;
    const daily = RollupBatch.entry(this.daily, `${customerId}|${day}|${robot}|${model}`, () => ({
      customerId,
      day,
      robotId: robot,
      model,
    }));
    const hourly = RollupBatch.entry(this.hourly, `${customerId}|${hour.getTime()}|${model}|${source}|${key}`, () => ({
      customerId,
      hour,
      model,
      source,
      apiKeyId: key,
    }));
    const instr =
      instructionKey === null
        ? undefined
        : RollupBatch.entry(this.instructions, `${customerId}|${instructionKey}|${day}`, () => ({
            customerId,
            instructionKey,
            day,
          }));
    return { daily, hourly, instr };
  }

  addLog(r: LogFact): void {
    this.logs++;
    const e = this.entries(r.customerId, r.atMs, r.robotId, r.model, r.source, r.apiKeyId, r.instructionKey);
    addLog(e.daily.m, r);
    addLog(e.hourly.m, r);
    if (e.instr !== undefined) {
      addLog(e.instr.m, r);
      // One of the spellings, chosen whatever the order rows arrive in (the first in sort order).
      if (r.instruction !== null && (e.instr.instruction == null || r.instruction < e.instr.instruction)) {
        e.instr.instruction = r.instruction;
      }
    }
  }

  addFeedback(f: FeedbackFact): void {
    this.feedback++;
    const e = this.entries(
      f.customerId,
      f.inferenceAtMs,
      f.robotId,
      f.model,
      f.source ?? "unknown",
      f.apiKeyId,
      f.instructionKey,
    );
    addFeedback(e.daily.m, f);
    addFeedback(e.hourly.m, f);
    if (e.instr !== undefined) addFeedback(e.instr.m, f);
  }
}

/** Position of the job in a source table (see analytics_watermarks). */
export interface Watermark {
  readonly xid: string;
  readonly rowId: string;
  readonly rowAt: string;
}

export const START: Watermark = { xid: "-1", rowId: NIL_UUID, rowAt: "-infinity" };

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

interface RawLog {
  id: string;
  xid: string;
  at_text: string;
  at_ms: number;
  customer_id: string;
  api_key_id: string | null;
  model: string;
  robot_id: string | null;
  source: string;
  instruction: string | null;
  instruction_key: string | null;
  status: string;
  error_code: string | null;
  total_ms: number;
  model_ms: number | null;
  queue_ms: number | null;
  safety_status: string | null;
  /** The customer's anonymization level when the row was written (its consent at created_at). */
  anonymization: string;
  /** False for rows of a deleted customer (a journal replayed after the erasure): not counted. */
  live: boolean;
}

interface RawFeedback {
  id: string;
  xid: string;
  at_text: string;
  customer_id: string;
  inference_at_ms: number;
  robot_id: string | null;
  model: string;
  source: string | null;
  api_key_id: string | null;
  instruction_key: string | null;
  type: string;
  rating: number | null;
  error_translation: number | null;
  error_rotation: number | null;
  error_gripper: number | null;
  /** The customer's anonymization level when the inference ran. */
  anonymization: string;
}

/**
 * The anonymization level of the customer's consent version in effect at `at` (the last one
 * granted at or before it; an expired or withdrawn version keeps its level), `none` without one.
 * A primary-key range scan of the customer's few versions.
 */
const anonymizationAt = (customer: SQL, at: SQL) =>
  sql`coalesce((select c.anonymization::text from customer_data_consent c
    where c.customer_id = ${customer} and c.granted_at <= ${at} order by c.version desc limit 1), 'none')`;

const LOG_COLUMNS = sql`id::text as id, ingest_xid::text as xid, created_at::text as at_text,
  (extract(epoch from created_at) * 1000)::float8 as at_ms, customer_id::text as customer_id,
  api_key_id::text as api_key_id, model, robot_id, source, instruction, instruction_key, status, error_code,
  total_ms::float8 as total_ms, model_ms::float8 as model_ms, queue_ms::float8 as queue_ms, safety_status,
  ${anonymizationAt(sql.raw("inference_logs.customer_id"), sql.raw("inference_logs.created_at"))} as anonymization,
  exists (select 1 from customers c where c.id = customer_id) as live`;

const FEEDBACK_SELECT = sql`select f.id::text as id, f.ingest_xid::text as xid, f.created_at::text as at_text,
  f.customer_id::text as customer_id, (extract(epoch from f.inference_created_at) * 1000)::float8 as inference_at_ms,
  f.robot_id, f.model, coalesce(l.source, f.source) as source, l.api_key_id::text as api_key_id,
  l.instruction_key, f.type, f.rating::int as rating, f.error_translation::float8 as error_translation,
  f.error_rotation::float8 as error_rotation, f.error_gripper::float8 as error_gripper,
  ${anonymizationAt(sql.raw("f.customer_id"), sql.raw("f.inference_created_at"))} as anonymization
  from feedback f left join inference_logs l
    on l.id = f.inference_id and l.created_at = f.inference_created_at and l.customer_id = f.customer_id`;

/** Robot and API key ids as analytics may see them: keyed pseudonyms under `partial` and `full`. */
function ids(p: Pseudonymizer, level: string, customerId: string, robotId: string | null, apiKeyId: string | null) {
  if (level === "none") return { robotId, apiKeyId };
  return { robotId: p.robot(customerId, robotId), apiKeyId: p.apiKey(customerId, apiKeyId) };
}

const toLog = (p: Pseudonymizer, r: RawLog): LogFact => ({
  id: r.id,
  atMs: Number(r.at_ms),
  customerId: r.customer_id,
  ...ids(p, r.anonymization, r.customer_id, r.robot_id, r.api_key_id),
  model: r.model,
  source: r.source,
  // Never stored under partial or full; dropped here too should a row written from a stale cache have it.
  instruction: r.anonymization === "none" ? r.instruction : null,
  instructionKey: r.instruction_key,
  status: r.status,
  errorCode: r.error_code,
  totalMs: Number(r.total_ms),
  modelMs: r.model_ms === null ? null : Number(r.model_ms),
  queueMs: r.queue_ms === null ? null : Number(r.queue_ms),
  safetyStatus: r.safety_status,
});

const toFeedback = (p: Pseudonymizer, r: RawFeedback): FeedbackFact => ({
  customerId: r.customer_id,
  inferenceAtMs: Number(r.inference_at_ms),
  ...ids(p, r.anonymization, r.customer_id, r.robot_id, r.api_key_id),
  model: r.model,
  source: r.source,
  instructionKey: r.instruction_key,
  type: r.type,
  rating: r.rating === null ? null : Number(r.rating),
  errorTranslation: r.error_translation === null ? null : Number(r.error_translation),
  errorRotation: r.error_rotation === null ? null : Number(r.error_rotation),
  errorGripper: r.error_gripper === null ? null : Number(r.error_gripper),
});

const CHUNK = 5_000;

type ColSpec = readonly [name: string, type: string];
interface TableSpec {
  readonly name: string;
  readonly keys: readonly ColSpec[];
  readonly values: readonly ColSpec[];
}

const MEASURE_COLUMNS: readonly ColSpec[] = [
  ["requests", "bigint"],
  ["errors", "bigint"],
  ["errors_by_code", "jsonb"],
  ["safety_pass", "bigint"],
  ["safety_clamped", "bigint"],
  ["safety_rejected", "bigint"],
  ["safety_emergency_stop", "bigint"],
  ["latency_total", "bytea"],
  ["latency_model", "bytea"],
  ["latency_queue", "bytea"],
  ["feedback_count", "bigint"],
  ["success_rating_sum", "bigint"],
  ["success_rating_count", "bigint"],
  ["safety_rating_sum", "bigint"],
  ["safety_rating_count", "bigint"],
  ["corrections", "bigint"],
  ["correction_translation_sum", "float8"],
  ["correction_rotation_sum", "float8"],
  ["correction_gripper_sum", "float8"],
  ["failures", "bigint"],
  ["first_seen", "timestamptz"],
  ["last_seen", "timestamptz"],
];

const DAILY: TableSpec = {
  name: "robot_performance_metrics",
  keys: [
    ["customer_id", "uuid"],
    ["day", "date"],
    ["robot_id", "text"],
    ["model", "text"],
  ],
  values: MEASURE_COLUMNS,
};

const HOURLY: TableSpec = {
  name: "usage_hourly_metrics",
  keys: [
    ["customer_id", "uuid"],
    ["hour", "timestamptz"],
    ["model", "text"],
    ["source", "text"],
    ["api_key_id", "uuid"],
  ],
  values: MEASURE_COLUMNS,
};

const INSTRUCTION_COLUMNS = new Set([
  "requests",
  "errors",
  "latency_total",
  "feedback_count",
  "success_rating_sum",
  "success_rating_count",
  "failures",
  "first_seen",
  "last_seen",
]);

const INSTRUCTIONS: TableSpec = {
  name: "instruction_analytics",
  keys: [
    ["customer_id", "uuid"],
    ["instruction_key", "text"],
    ["day", "date"],
  ],
  values: [["instruction", "text"], ...MEASURE_COLUMNS.filter(([c]) => INSTRUCTION_COLUMNS.has(c))],
};

const camel = (c: string) => c.replace(/_([a-z])/g, (_m, x: string) => x.toUpperCase());

/** A stored row (snake_case, as the driver returns it) as measures; absent columns count zero. */
function storedOf(r: Record<string, unknown>): StoredMeasures {
  const out: Record<string, unknown> = {};
  for (const [c, type] of MEASURE_COLUMNS) {
    const v = r[c];
    out[camel(c)] =
      v === undefined || v === null
        ? type === "jsonb"
          ? {}
          : type === "bytea" || type === "timestamptz"
            ? null
            : 0
        : v;
  }
  return out as unknown as StoredMeasures;
}

/** The value of column `c` for the unnest arrays (jsonb as JSON text, bytea as hex, timestamps as ISO). */
function columnValue(c: string, m: ReturnType<typeof toStored>, instruction: string | null): unknown {
  if (c === "instruction") return instruction;
  const v = (m as unknown as Record<string, unknown>)[camel(c)];
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
  if (v !== null && typeof v === "object") return JSON.stringify(v);
  return v ?? null;
}

const minText = (a: string | null, b: string | null) => (a === null ? b : b === null || a <= b ? a : b);

/** SQL of the rollup tables and of the job's reads, always inside the caller's transaction; framework-free. */
export class RollupsRepo {
  private readonly pseudonyms: Pseudonymizer;

  /** `pseudonyms` must use the SECRET_KEY of the instances writing the logs (rows of `full` carry theirs). */
  constructor(pseudonyms: Pseudonymizer) {
    this.pseudonyms = pseudonyms;
  }

  /** Transaction ids below this have all ended: rows they wrote are final. */
  async safeXid(tx: Db): Promise<string> {
    const res = await tx.execute(sql`select pg_snapshot_xmin(pg_current_snapshot())::text as x`);
    return rowsOf<{ x: string }>(res)[0]?.x ?? "0";
  }

  async watermark(tx: Db, name: string): Promise<Watermark> {
    const res = await tx.execute(
      sql`select xid::text as xid, row_id::text as row_id, row_at::text as row_at from analytics_watermarks where name = ${name}`,
    );
    const row = rowsOf<{ xid: string; row_id: string; row_at: string }>(res)[0];
    return row === undefined ? START : { xid: row.xid, rowId: row.row_id, rowAt: row.row_at };
  }

  async setWatermark(tx: Db, name: string, w: Watermark): Promise<void> {
    await tx
      .insert(analyticsWatermarks)
      .values({
        name,
        xid: sql`${w.xid}::bigint` as unknown as number,
        rowId: w.rowId,
        rowAt: sql`${w.rowAt}::timestamptz` as unknown as Date,
      })
      .onConflictDoUpdate({
        target: analyticsWatermarks.name,
        set: {
          xid: sql`excluded.xid`,
          rowId: sql`excluded.row_id`,
          rowAt: sql`excluded.row_at`,
          updatedAt: sql`now()`,
        },
      });
  }

  /** The next `limit` log rows after `after`, written by transactions below `below`, in watermark order. */
  async logsAfter(
    tx: Db,
    after: Watermark,
    below: string,
    limit: number,
  ): Promise<{ facts: LogFact[]; last?: Watermark }> {
    const res = await tx.execute(sql`select ${LOG_COLUMNS} from inference_logs
      where (ingest_xid, id, created_at) > (${after.xid}::bigint, ${after.rowId}::uuid, ${after.rowAt}::timestamptz)
        and ingest_xid < ${below}::bigint
      order by ingest_xid, id, created_at limit ${limit}`);
    const rows = rowsOf<RawLog>(res);
    const l = rows[rows.length - 1];
    return {
      facts: rows.filter((r) => r.live).map((r) => toLog(this.pseudonyms, r)),
      ...(l === undefined ? {} : { last: { xid: l.xid, rowId: l.id, rowAt: l.at_text } }),
    };
  }

  async feedbackAfter(
    tx: Db,
    after: Watermark,
    below: string,
    limit: number,
  ): Promise<{ facts: FeedbackFact[]; last?: Watermark }> {
    const res = await tx.execute(sql`${FEEDBACK_SELECT}
      where (f.ingest_xid, f.id) > (${after.xid}::bigint, ${after.rowId}::uuid) and f.ingest_xid < ${below}::bigint
      order by f.ingest_xid, f.id limit ${limit}`);
    const rows = rowsOf<RawFeedback>(res);
    const l = rows[rows.length - 1];
    return {
      facts: rows.map((r) => toFeedback(this.pseudonyms, r)),
      ...(l === undefined ? {} : { last: { xid: l.xid, rowId: l.id, rowAt: l.at_text } }),
    };
  }

  /** Log rows of one UTC day already counted by the job (at or below `upTo`), by id after `afterId`. */
  async logsOfDay(
    tx: Db,
    day: Date,
    upTo: Watermark,
    afterId: string,
    limit: number,
  ): Promise<{ facts: LogFact[]; scanned: number; lastId: string | undefined }> {
    const res = await tx.execute(sql`select ${LOG_COLUMNS} from inference_logs
      where created_at >= ${day.toISOString()}::timestamptz
        and created_at < ${day.toISOString()}::timestamptz + interval '1 day'
        and (ingest_xid, id, created_at) <= (${upTo.xid}::bigint, ${upTo.rowId}::uuid, ${upTo.rowAt}::timestamptz)
        and id > ${afterId}::uuid
      order by id limit ${limit}`);
    const rows = rowsOf<RawLog>(res);
    return {
      facts: rows.filter((r) => r.live).map((r) => toLog(this.pseudonyms, r)),
      scanned: rows.length,
      lastId: rows[rows.length - 1]?.id,
    };
  }

  /** Feedback on inferences of [from, to) already counted by the job (at or below `upTo`). */
  async feedbackOfRange(tx: Db, from: Date, to: Date, upTo: Watermark): Promise<FeedbackFact[]> {
    const res = await tx.execute(sql`${FEEDBACK_SELECT}
      where f.inference_created_at >= ${from.toISOString()}::timestamptz
        and f.inference_created_at < ${to.toISOString()}::timestamptz
        and (f.ingest_xid, f.id) <= (${upTo.xid}::bigint, ${upTo.rowId}::uuid)`);
    return rowsOf<RawFeedback>(res).map((r) => toFeedback(this.pseudonyms, r));
  }

  /** Removes the rollups of the UTC days [from, to) (a rebuild recomputes them). */
  async clearRange(tx: Db, from: Date, to: Date): Promise<void> {
    const f = from.toISOString();
    const t = to.toISOString();
    await tx.execute(sql`delete from robot_performance_metrics where day >= ${f}::date and day < ${t}::date`);
    await tx.execute(
      sql`delete from usage_hourly_metrics where hour >= ${f}::timestamptz and hour < ${t}::timestamptz`,
    );
    await tx.execute(sql`delete from instruction_analytics where day >= ${f}::date and day < ${t}::date`);
  }

  /** Merges a batch into the rollup tables: reads the rows it touches, adds, writes them back. */
  async flush(tx: Db, batch: RollupBatch): Promise<void> {
    await this.merge(tx, DAILY, [...batch.daily.values()], (k) => [k.customerId, k.day, k.robotId, k.model]);
    await this.merge(tx, HOURLY, [...batch.hourly.values()], (k) => [
      k.customerId,
      k.hour.toISOString(),
      k.model,
      k.source,
      k.apiKeyId,
    ]);
    await this.merge(tx, INSTRUCTIONS, [...batch.instructions.values()], (k) => [
      k.customerId,
      k.instructionKey,
      k.day,
    ]);
  }

  /**
   * One table: the stored rows of these keys (a join on unnest'ed key arrays, so each is a
   * primary-key lookup), merged with the batch in memory, written back with one
   * INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE per chunk: a fixed number of array
   * parameters whatever the chunk size (a query builder expanding 30 placeholders per row cost
   * more than the database work).
   */
  private async merge<K>(
    tx: Db,
    table: TableSpec,
    entries: Entry<K>[],
    keyOf: (k: K) => (string | number)[],
  ): Promise<void> {
    const keyCols = table.keys.map(([c]) => c);
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      const keys = part.map((e) => keyOf(e.key).map(String));
      const unnestKeys = sql.join(
        table.keys.map(([, type], j) => sql`${sql.param(keys.map((k) => k[j]))}::${sql.raw(type)}[]`),
        sql`, `,
      );
      const on = sql.join(
        keyCols.map((c) => sql`t.${sql.identifier(c)} = k.${sql.identifier(c)}`),
        sql` and `,
      );
      const res = await tx.execute(
        sql`select ${sql.join(
          table.keys.map(([c, type]) =>
            type === "timestamptz"
              ? sql`(extract(epoch from t.${sql.identifier(c)}) * 1000)::bigint::text as ${sql.identifier(`k_${c}`)}`
              : sql`t.${sql.identifier(c)}::text as ${sql.identifier(`k_${c}`)}`,
          ),
          sql`, `,
        )}, t.* from unnest(${unnestKeys}) as k(${sql.join(
          keyCols.map((c) => sql.identifier(c)),
          sql`, `,
        )}) join ${sql.identifier(table.name)} t on ${on}`,
      );
      const stored = new Map<string, Record<string, unknown>>();
      for (const r of rowsOf<Record<string, unknown>>(res)) {
        stored.set(keyCols.map((c) => String(r[`k_${c}`])).join("|"), r);
      }
      const rows = part.map((e, j) => {
        const k = keys[j] as string[];
        const old = stored.get(this.canonicalKey(table, k));
        const m = old === undefined ? e.m : mergeMeasures(fromStored(storedOf(old)), e.m);
        const instruction =
          table === INSTRUCTIONS ? minText(e.instruction ?? null, (old?.instruction as string | null) ?? null) : null;
        return { key: k, m: toStored(m), instruction };
      });
      const cols = [...table.keys, ...table.values];
      const arrays = cols.map(([c, type]) => {
        const values = rows.map((r) => {
          const ki = keyCols.indexOf(c);
          if (ki >= 0) return r.key[ki];
          return columnValue(c, r.m, r.instruction);
        });
        return sql`${sql.param(values)}::${sql.raw(type === "jsonb" || type === "bytea" ? "text" : type)}[]`;
      });
      const select = cols.map(([c, type]) =>
        type === "jsonb"
          ? sql`${sql.identifier(c)}::jsonb`
          : type === "bytea"
            ? sql`decode(${sql.identifier(c)}, 'hex')`
            : sql`${sql.identifier(c)}`,
      );
      const names = sql.join(
        cols.map(([c]) => sql.identifier(c)),
        sql`, `,
      );
      await tx.execute(sql`insert into ${sql.identifier(table.name)} (${names})
        select ${sql.join(select, sql`, `)} from unnest(${sql.join(arrays, sql`, `)}) as u(${names})
        on conflict (${sql.join(
          keyCols.map((c) => sql.identifier(c)),
          sql`, `,
        )}) do update set ${sql.join(
          table.values.map(([c]) => sql`${sql.identifier(c)} = excluded.${sql.identifier(c)}`),
          sql`, `,
        )}`);
    }
  }

  /** The key as the stored-row lookup prints it: timestamps as epoch milliseconds. */
  private canonicalKey(table: TableSpec, k: string[]): string {
    return k.map((v, i) => (table.keys[i]?.[1] === "timestamptz" ? String(Date.parse(v)) : v)).join("|");
  }

  async deleteCustomer(tx: Db, customerId: string): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const table of ["robot_performance_metrics", "usage_hourly_metrics", "instruction_analytics"]) {
      const res = await tx.execute(
        sql`delete from ${sql.identifier(table)} where customer_id = ${customerId}::uuid returning 1`,
      );
      counts[table] = rowsOf(res).length;
    }
    return counts;
  }
}
