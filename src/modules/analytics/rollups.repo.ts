import { getTableColumns, type SQL, sql } from "drizzle-orm";
import type { PgTable } from "drizzle-orm/pg-core";
import type { Db } from "../../platform/db/client.ts";
import {
  analyticsWatermarks,
  instructionAnalytics,
  robotPerformanceMetrics,
  usageHourlyMetrics,
} from "../../platform/db/schema/index.ts";
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
}

const LOG_COLUMNS = sql`id::text as id, ingest_xid::text as xid, created_at::text as at_text,
  (extract(epoch from created_at) * 1000)::float8 as at_ms, customer_id::text as customer_id,
  api_key_id::text as api_key_id, model, robot_id, source, instruction, instruction_key, status, error_code,
  total_ms::float8 as total_ms, model_ms::float8 as model_ms, queue_ms::float8 as queue_ms, safety_status,
  exists (select 1 from customers c where c.id = customer_id) as live`;

const FEEDBACK_SELECT = sql`select f.id::text as id, f.ingest_xid::text as xid, f.created_at::text as at_text,
  f.customer_id::text as customer_id, (extract(epoch from f.inference_created_at) * 1000)::float8 as inference_at_ms,
  f.robot_id, f.model, coalesce(l.source, f.source) as source, l.api_key_id::text as api_key_id,
  l.instruction_key, f.type, f.rating::int as rating, f.error_translation::float8 as error_translation,
  f.error_rotation::float8 as error_rotation, f.error_gripper::float8 as error_gripper
  from feedback f left join inference_logs l
    on l.id = f.inference_id and l.created_at = f.inference_created_at and l.customer_id = f.customer_id`;

const toLog = (r: RawLog): LogFact => ({
  id: r.id,
  atMs: Number(r.at_ms),
  customerId: r.customer_id,
  apiKeyId: r.api_key_id,
  model: r.model,
  robotId: r.robot_id,
  source: r.source,
  instruction: r.instruction,
  instructionKey: r.instruction_key,
  status: r.status,
  errorCode: r.error_code,
  totalMs: Number(r.total_ms),
  modelMs: r.model_ms === null ? null : Number(r.model_ms),
  queueMs: r.queue_ms === null ? null : Number(r.queue_ms),
  safetyStatus: r.safety_status,
});

const toFeedback = (r: RawFeedback): FeedbackFact => ({
  customerId: r.customer_id,
  inferenceAtMs: Number(r.inference_at_ms),
  robotId: r.robot_id,
  model: r.model,
  source: r.source,
  apiKeyId: r.api_key_id,
  instructionKey: r.instruction_key,
  type: r.type,
  rating: r.rating === null ? null : Number(r.rating),
  errorTranslation: r.error_translation === null ? null : Number(r.error_translation),
  errorRotation: r.error_rotation === null ? null : Number(r.error_rotation),
  errorGripper: r.error_gripper === null ? null : Number(r.error_gripper),
});

/** Every column of `table` set from EXCLUDED (the merged values replace the stored row). */
function excludedAll(table: PgTable, keyColumns: readonly string[]): Record<string, SQL> {
  const set: Record<string, SQL> = {};
  for (const [prop, col] of Object.entries(getTableColumns(table))) {
    if (keyColumns.includes(prop)) continue;
    set[prop] = sql.raw(`excluded."${col.name}"`);
  }
  return set;
}

const CHUNK = 500;

const minText = (a: string | null, b: string | null) => (a === null ? b : b === null || a <= b ? a : b);

/** SQL of the rollup tables and of the job's reads, always inside the caller's transaction; framework-free. */
export class RollupsRepo {
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
      facts: rows.filter((r) => r.live).map(toLog),
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
      facts: rows.map(toFeedback),
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
      facts: rows.filter((r) => r.live).map(toLog),
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
    return rowsOf<RawFeedback>(res).map(toFeedback);
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
    await this.flushDaily(tx, [...batch.daily.values()]);
    await this.flushHourly(tx, [...batch.hourly.values()]);
    await this.flushInstructions(tx, [...batch.instructions.values()]);
  }

  private async flushDaily(tx: Db, entries: Entry<DailyKey>[]): Promise<void> {
    const t = robotPerformanceMetrics;
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      const keys = JSON.stringify(part.map((e) => [e.key.customerId, e.key.day, e.key.robotId, e.key.model]));
      const existing = await tx
        .select()
        .from(t)
        .where(
          sql`(customer_id, day, robot_id, model) in (select (k->>0)::uuid, (k->>1)::date, k->>2, k->>3
            from jsonb_array_elements(${keys}::jsonb) k)`,
        );
      const stored = new Map(existing.map((r) => [`${r.customerId}|${r.day}|${r.robotId}|${r.model}`, r]));
      const values = part.map((e) => {
        const k = e.key;
        const old = stored.get(`${k.customerId}|${k.day}|${k.robotId}|${k.model}`);
        const m = old === undefined ? e.m : mergeMeasures(fromStored(old as StoredMeasures), e.m);
        return { ...k, ...toStored(m) };
      });
      await tx
        .insert(t)
        .values(values)
        .onConflictDoUpdate({
          target: [t.customerId, t.day, t.robotId, t.model],
          set: excludedAll(t, ["customerId", "day", "robotId", "model"]),
        });
    }
  }

  private async flushHourly(tx: Db, entries: Entry<HourlyKey>[]): Promise<void> {
    const t = usageHourlyMetrics;
    const id = (k: { customerId: string; hour: Date; model: string; source: string; apiKeyId: string }) =>
      `${k.customerId}|${k.hour.getTime()}|${k.model}|${k.source}|${k.apiKeyId}`;
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      const keys = JSON.stringify(
        part.map((e) => [e.key.customerId, e.key.hour.toISOString(), e.key.model, e.key.source, e.key.apiKeyId]),
      );
      const existing = await tx
        .select()
        .from(t)
        .where(
          sql`(customer_id, hour, model, source, api_key_id) in (select (k->>0)::uuid, (k->>1)::timestamptz, k->>2,
            k->>3, (k->>4)::uuid from jsonb_array_elements(${keys}::jsonb) k)`,
        );
      const stored = new Map(existing.map((r) => [id({ ...r, hour: new Date(r.hour) }), r]));
      const values = part.map((e) => {
        const old = stored.get(id(e.key));
        const m = old === undefined ? e.m : mergeMeasures(fromStored(old as StoredMeasures), e.m);
        return { ...e.key, ...toStored(m) };
      });
      await tx
        .insert(t)
        .values(values)
        .onConflictDoUpdate({
          target: [t.customerId, t.hour, t.model, t.source, t.apiKeyId],
          set: excludedAll(t, ["customerId", "hour", "model", "source", "apiKeyId"]),
        });
    }
  }

  private async flushInstructions(tx: Db, entries: Entry<InstructionKey>[]): Promise<void> {
    const t = instructionAnalytics;
    for (let i = 0; i < entries.length; i += CHUNK) {
      const part = entries.slice(i, i + CHUNK);
      const keys = JSON.stringify(part.map((e) => [e.key.customerId, e.key.instructionKey, e.key.day]));
      const existing = await tx
        .select()
        .from(t)
        .where(
          sql`(customer_id, instruction_key, day) in (select (k->>0)::uuid, k->>1, (k->>2)::date
            from jsonb_array_elements(${keys}::jsonb) k)`,
        );
      const stored = new Map(existing.map((r) => [`${r.customerId}|${r.instructionKey}|${r.day}`, r]));
      const values = part.map((e) => {
        const k = e.key;
        const old = stored.get(`${k.customerId}|${k.instructionKey}|${k.day}`);
        const m = e.m;
        const requests = m.requests + Number(old?.requests ?? 0);
        const latency = m.latencyTotal.merge(old?.latencyTotal ?? null);
        const first = [m.firstSeen, old?.firstSeen ?? null].filter((d): d is Date => d !== null);
        const last = [m.lastSeen, old?.lastSeen ?? null].filter((d): d is Date => d !== null);
        return {
          ...k,
          instruction: minText(e.instruction ?? null, old?.instruction ?? null),
          requests,
          errors: m.errors + Number(old?.errors ?? 0),
          latencyTotal: latency.toJSON(),
          feedbackCount: m.feedbackCount + Number(old?.feedbackCount ?? 0),
          successRatingSum: m.successRatingSum + Number(old?.successRatingSum ?? 0),
          successRatingCount: m.successRatingCount + Number(old?.successRatingCount ?? 0),
          failures: m.failures + Number(old?.failures ?? 0),
          firstSeen: first.length === 0 ? null : new Date(Math.min(...first.map((d) => new Date(d).getTime()))),
          lastSeen: last.length === 0 ? null : new Date(Math.max(...last.map((d) => new Date(d).getTime()))),
        };
      });
      await tx
        .insert(t)
        .values(values)
        .onConflictDoUpdate({
          target: [t.customerId, t.instructionKey, t.day],
          set: excludedAll(t, ["customerId", "instructionKey", "day"]),
        });
    }
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
