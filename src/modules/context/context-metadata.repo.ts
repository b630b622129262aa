import { sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";

/**
 * One context_metadata row as the batch writer carries it: plain JSON (rows spilled to the
 * journal come back through JSON.parse), the embedding as a number array.
 */
export interface ContextMetadataEntry {
  readonly inferenceId: string;
  readonly customerId: string;
  readonly createdAt: string;
  readonly imageSha256: string;
  readonly imageFormat: "jpeg" | "png" | "webp" | "array";
  readonly imageBytes: number;
  readonly width: number;
  readonly height: number;
  readonly embedding: number[] | null;
  readonly embeddingKind: string | null;
  readonly imageKey: string | null;
}

/** One row as the account export writes it. */
export interface ExportContextRow extends Record<string, unknown> {
  readonly inference_id: string;
  readonly created_at: string;
}

export interface ContextCursor {
  readonly createdAt: string;
  readonly inferenceId: string;
}

function rowsOf<T>(res: unknown): T[] {
  return (res as { rows: T[] }).rows;
}

function affected(res: unknown): number {
  const r = res as { rowCount?: number | null; affectedRows?: number };
  return r.rowCount ?? r.affectedRows ?? 0;
}

/** Data access for context_metadata; framework-free. */
export class ContextMetadataRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** One INSERT ... FROM unnest(...) per batch; a replayed row is ignored (same inference id). */
  async insertMany(rows: readonly ContextMetadataEntry[]): Promise<void> {
    if (rows.length === 0) return;
    const col = <T>(f: (r: ContextMetadataEntry) => T) => sql.param(rows.map(f));
    // real[] per row cannot ride in a 1-D unnest: carried as a text literal and cast back.
    const vec = (v: number[] | null) => (v === null ? null : `{${v.join(",")}}`);
    await this.db.execute(sql`
      insert into context_metadata (inference_id, customer_id, created_at, image_sha256, image_format, image_bytes,
        width, height, embedding, embedding_kind, image_key)
      select inference_id, customer_id, created_at, image_sha256, image_format, image_bytes, width, height,
        embedding::real[], embedding_kind, image_key
      from unnest(
        ${col((r) => r.inferenceId)}::uuid[], ${col((r) => r.customerId)}::uuid[],
        ${col((r) => r.createdAt)}::timestamptz[], ${col((r) => r.imageSha256)}::text[],
        ${col((r) => r.imageFormat)}::text[], ${col((r) => r.imageBytes)}::int[], ${col((r) => r.width)}::int[],
        ${col((r) => r.height)}::int[], ${col((r) => vec(r.embedding))}::text[], ${col((r) => r.embeddingKind)}::text[],
        ${col((r) => r.imageKey)}::text[]
      ) as t(inference_id, customer_id, created_at, image_sha256, image_format, image_bytes, width, height,
        embedding, embedding_kind, image_key)
      on conflict do nothing`);
  }

  /** A page of the customer's rows for the account export, oldest first, after the cursor. */
  async exportPage(customerId: string, after: ContextCursor | undefined, limit: number): Promise<ExportContextRow[]> {
    const from =
      after === undefined
        ? sql``
        : sql`and (created_at, inference_id) > (${after.createdAt}::timestamptz, ${after.inferenceId}::uuid)`;
    const res = await this.db.execute(sql`
      select inference_id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at,
        image_sha256, image_format, image_bytes, width, height, embedding, embedding_kind, image_key
      from context_metadata
      where customer_id = ${customerId} ${from}
      order by context_metadata.created_at, context_metadata.inference_id
      limit ${limit}`);
    return rowsOf<ExportContextRow>(res).map((r) => ({
      ...r,
      embedding: r.embedding === null ? null : (r.embedding as unknown[]).map(Number),
    }));
  }

  /**
   * Deletes at most `limit` of the customer's rows older than `before`; returns the image keys
   * they named (distinct), for the caller to delete the objects no other row still names.
   */
  async deleteExpiredBatch(
    customerId: string,
    before: Date,
    limit: number,
  ): Promise<{ deleted: number; imageKeys: string[] }> {
    const cutoff = sql`${before.toISOString()}::timestamptz`;
    const res = await this.db.execute(sql`
      delete from context_metadata where customer_id = ${customerId} and created_at < ${cutoff} and inference_id in (
        select inference_id from context_metadata where customer_id = ${customerId} and created_at < ${cutoff}
        limit ${limit})
      returning image_key`);
    const rows = rowsOf<{ image_key: string | null }>(res);
    const keys = new Set<string>();
    for (const r of rows) if (r.image_key !== null) keys.add(r.image_key);
    return { deleted: rows.length, imageKeys: [...keys] };
  }

  async countExpired(customerId: string, before: Date): Promise<number> {
    const res = await this.db.execute(sql`
      select count(*)::int as n from context_metadata
      where customer_id = ${customerId} and created_at < ${before.toISOString()}::timestamptz`);
    return Number(rowsOf<{ n: number }>(res)[0]?.n ?? 0);
  }

  /** Of `keys`, those some row of the customer still names (content addressing: one object, many rows). */
  async keysInUse(customerId: string, keys: readonly string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    const res = await this.db.execute(sql`
      select distinct image_key from context_metadata
      where customer_id = ${customerId} and image_key = any(${sql.param([...keys])}::text[])`);
    return new Set(rowsOf<{ image_key: string }>(res).map((r) => r.image_key));
  }

  /** Customers with at least one row naming a stored image. */
  async customersWithImages(): Promise<string[]> {
    const res = await this.db.execute(
      sql`select distinct customer_id from context_metadata where image_key is not null order by 1`,
    );
    return rowsOf<{ customer_id: string }>(res).map((r) => r.customer_id);
  }

  /** Sets image_key to null on at most `limit` of the customer's rows; the number changed. */
  async clearImageKeysBatch(customerId: string, limit: number): Promise<number> {
    const res = await this.db.execute(sql`
      update context_metadata set image_key = null where customer_id = ${customerId} and inference_id in (
        select inference_id from context_metadata where customer_id = ${customerId} and image_key is not null
        limit ${limit})`);
    return affected(res);
  }

  async countImageKeys(customerId: string): Promise<number> {
    const res = await this.db.execute(sql`
      select count(*)::int as n from context_metadata where customer_id = ${customerId} and image_key is not null`);
    return Number(rowsOf<{ n: number }>(res)[0]?.n ?? 0);
  }

  async deleteCustomer(customerId: string): Promise<number> {
    const res = await this.db.execute(sql`delete from context_metadata where customer_id = ${customerId}`);
    return affected(res);
  }
}
