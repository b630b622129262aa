import { sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { CONSENT_TIERS, TIER_PERMISSIONS } from "../consent/consent-policy.ts";

/** Tiers whose permissions include `store_images` (consent-policy.ts decides, not this file). */
const IMAGE_TIERS = CONSENT_TIERS.filter((t) => TIER_PERMISSIONS[t].store_images);

/** A table the retention job deletes from: its time column and its primary key. */
export interface RetainedTable {
  readonly name: "inference_logs" | "safety_incidents" | "feedback" | "shadow_results";
  readonly time: "created_at" | "at";
  /** The primary key, as a row expression and as a select list. */
  readonly key: string;
  readonly keyColumns: string;
}

/** What is deleted row by row, per customer (docs/privacy.md "Retention"). */
export const RETAINED_TABLES: readonly RetainedTable[] = [
  { name: "inference_logs", time: "created_at", key: "(id, created_at)", keyColumns: "id, created_at" },
  { name: "safety_incidents", time: "at", key: "id", keyColumns: "id" },
  { name: "feedback", time: "created_at", key: "id", keyColumns: "id" },
  { name: "shadow_results", time: "created_at", key: "id", keyColumns: "id" },
];

/** A customer and the `retention_days` of its consent version in effect (null: no version yet). */
export interface CustomerRetention {
  readonly customerId: string;
  readonly retentionDays: number | null;
  /** Whether its consent now lets us keep camera images; null: no version yet (the default tier decides). */
  readonly storeImages: boolean | null;
}

const MONTH_TABLE = /^inference_logs_y(\d{4})m(\d{2})$/;

/** The end (exclusive) of a monthly partition `inference_logs_yYYYYmMM`, or undefined for other names. */
export function partitionEnd(name: string): Date | undefined {
  const m = MONTH_TABLE.exec(name);
  if (m === null) return undefined;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]), 1));
}

function rowsOf<T>(res: unknown): T[] {
  return (res as { rows: T[] }).rows;
}

/** Rows a DELETE or UPDATE touched (node-postgres: rowCount; PGlite: affectedRows). */
function affected(res: unknown): number {
  const r = res as { rowCount?: number | null; affectedRows?: number };
  return r.rowCount ?? r.affectedRows ?? 0;
}

/** SQL of the retention job; framework-free. */
export class RetentionRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** Every customer with the retention of its last consent version granted at or before `now`. */
  async customers(now: Date): Promise<CustomerRetention[]> {
    const res = await this.db.execute(sql`
      select c.id as customer_id, v.retention_days,
        case when v.customer_id is null then null
          else v.store_images and v.tier::text = any(${sql.param(IMAGE_TIERS)}::text[]) and not v.withdrawn and v.anonymization <> 'full'
            and (v.expires_at is null or v.expires_at > ${now.toISOString()}::timestamptz)
        end as store_images
      from customers c
      left join lateral (
        select customer_id, retention_days, store_images, tier, withdrawn, anonymization, expires_at
        from customer_data_consent d
        where d.customer_id = c.id and d.granted_at <= ${now.toISOString()}::timestamptz
        order by d.version desc limit 1
      ) v on true
      order by c.id`);
    return rowsOf<{ customer_id: string; retention_days: number | null; store_images: boolean | null }>(res).map(
      (r) => ({
        customerId: r.customer_id,
        retentionDays: r.retention_days === null ? null : Number(r.retention_days),
        storeImages: r.store_images,
      }),
    );
  }

  /** Deletes at most `limit` of the customer's rows older than `before`; the number deleted. */
  async deleteBatch(table: RetainedTable, customerId: string, before: Date, limit: number): Promise<number> {
    const t = sql.raw(table.name);
    const time = sql.raw(table.time);
    const key = sql.raw(table.key);
    const cols = sql.raw(table.keyColumns);
    const cutoff = sql`${before.toISOString()}::timestamptz`;
    // The outer predicates repeat the inner ones on purpose: without them PostgreSQL plans a hash
    // semi-join over a sequential scan of every partition for each batch.
    const res = await this.db.execute(sql`
      delete from ${t} where customer_id = ${customerId} and ${time} < ${cutoff} and ${key} in (
        select ${cols} from ${t} where customer_id = ${customerId} and ${time} < ${cutoff} limit ${limit})`);
    return affected(res);
  }

  /** How many of the customer's rows are older than `before`, outside the partitions named in `skip`. */
  async count(table: RetainedTable, customerId: string, before: Date, skip: readonly string[]): Promise<number> {
    const t = sql.raw(table.name);
    const time = sql.raw(table.time);
    const outside =
      skip.length === 0
        ? sql``
        : sql` and tableoid not in (select oid from pg_class where relname = any(${sql.param([...skip])}::text[]))`;
    const res = await this.db.execute(sql`
      select count(*)::int as n from ${t}
      where customer_id = ${customerId} and ${time} < ${before.toISOString()}::timestamptz${outside}`);
    return Number(rowsOf<{ n: number }>(res)[0]?.n ?? 0);
  }

  /**
   * Clears the instruction text of at most `limit` of the customer's `instruction_analytics` rows
   * of UTC days before `beforeDay` (YYYY-MM-DD); the counts stay. The number cleared.
   */
  async clearInstructionBatch(customerId: string, beforeDay: string, limit: number): Promise<number> {
    const res = await this.db.execute(sql`
      update instruction_analytics set instruction = null
      where (customer_id, instruction_key, day) in (
        select customer_id, instruction_key, day from instruction_analytics
        where customer_id = ${customerId} and day < ${beforeDay}::date and instruction is not null
        limit ${limit})`);
    return affected(res);
  }

  /** How many of the customer's instruction_analytics rows before `beforeDay` still hold text. */
  async countInstructions(customerId: string, beforeDay: string): Promise<number> {
    const res = await this.db.execute(sql`
      select count(*)::int as n from instruction_analytics
      where customer_id = ${customerId} and day < ${beforeDay}::date and instruction is not null`);
    return Number(rowsOf<{ n: number }>(res)[0]?.n ?? 0);
  }

  /** Deletes at most `limit` stripe_events rows received before `before`; the number deleted. */
  async deleteStripeEventsBatch(before: Date, limit: number): Promise<number> {
    const cutoff = sql`${before.toISOString()}::timestamptz`;
    const res = await this.db.execute(sql`
      delete from stripe_events where received_at < ${cutoff} and id in (
        select id from stripe_events where received_at < ${cutoff} limit ${limit})`);
    return affected(res);
  }

  /** How many stripe_events rows were received before `before`. */
  async countStripeEvents(before: Date): Promise<number> {
    const res = await this.db.execute(
      sql`select count(*)::int as n from stripe_events where received_at < ${before.toISOString()}::timestamptz`,
    );
    return Number(rowsOf<{ n: number }>(res)[0]?.n ?? 0);
  }

  /** Names of the monthly partitions of inference_logs (never the DEFAULT one). */
  async monthPartitions(): Promise<string[]> {
    const res = await this.db.execute(
      sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
          join pg_class p on p.oid = i.inhparent where p.relname = 'inference_logs' order by 1`,
    );
    return rowsOf<{ name: string }>(res)
      .map((r) => r.name)
      .filter((n) => MONTH_TABLE.test(n));
  }

  /**
   * Detaches and drops one monthly partition. Detaching takes a brief exclusive lock of
   * inference_logs: `lock_timeout` makes it give up (and retry next run) rather than queue
   * inserts behind a long reader.
   */
  async dropPartition(name: string): Promise<void> {
    if (!MONTH_TABLE.test(name)) throw new Error(`not a monthly partition: ${name}`);
    await this.db.transaction(async (tx) => {
      await tx.execute(sql`set local lock_timeout = '5s'`);
      await tx.execute(sql.raw(`alter table "inference_logs" detach partition "${name}"`));
      await tx.execute(sql.raw(`drop table "${name}"`));
    });
  }
}
