import { and, eq, inArray, isNotNull, lt, lte, or, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { type AccountExportRow, accountExports } from "../../platform/db/schema/index.ts";

const ACTIVE = ["queued", "running"];

/** SQL of the account_exports table (export jobs). */
export class ExportRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /** A queued job, or undefined when the customer already has one queued or running (unique index). */
  async insertQueued(input: {
    customerId: string;
    userId: string | null;
    apiKeyId: string | null;
    at: Date;
  }): Promise<AccountExportRow | undefined> {
    const rows = await this.db
      .insert(accountExports)
      .values({
        customerId: input.customerId,
        createdByUserId: input.userId,
        createdByApiKeyId: input.apiKeyId,
        createdAt: input.at,
        status: "queued",
      })
      .onConflictDoNothing()
      .returning();
    return rows[0];
  }

  async findActive(customerId: string): Promise<AccountExportRow | undefined> {
    const rows = await this.db
      .select()
      .from(accountExports)
      .where(and(eq(accountExports.customerId, customerId), inArray(accountExports.status, ACTIVE)))
      .limit(1);
    return rows[0];
  }

  async get(customerId: string, id: string): Promise<AccountExportRow | undefined> {
    const rows = await this.db
      .select()
      .from(accountExports)
      .where(and(eq(accountExports.id, id), eq(accountExports.customerId, customerId)))
      .limit(1);
    return rows[0];
  }

  async byId(id: string): Promise<AccountExportRow | undefined> {
    const rows = await this.db.select().from(accountExports).where(eq(accountExports.id, id)).limit(1);
    return rows[0];
  }

  /** queued -> running; false when the job is no longer queued (failed by a cleanup meanwhile). */
  async start(id: string, at: Date): Promise<boolean> {
    const rows = await this.db
      .update(accountExports)
      .set({ status: "running", startedAt: at, heartbeatAt: at })
      .where(and(eq(accountExports.id, id), eq(accountExports.status, "queued")))
      .returning({ id: accountExports.id });
    return rows.length === 1;
  }

  async heartbeat(id: string, progress: Record<string, number>, at: Date): Promise<void> {
    await this.db
      .update(accountExports)
      .set({ progress, heartbeatAt: at })
      .where(and(eq(accountExports.id, id), eq(accountExports.status, "running")));
  }

  async finish(
    id: string,
    done: { filePath: string; sizeBytes: number; progress: Record<string, number>; at: Date; expiresAt: Date },
  ): Promise<boolean> {
    const rows = await this.db
      .update(accountExports)
      .set({
        status: "done",
        filePath: done.filePath,
        sizeBytes: done.sizeBytes,
        progress: done.progress,
        finishedAt: done.at,
        heartbeatAt: done.at,
        expiresAt: done.expiresAt,
      })
      .where(and(eq(accountExports.id, id), eq(accountExports.status, "running")))
      .returning({ id: accountExports.id });
    return rows.length === 1;
  }

  async fail(id: string, error: string, at: Date): Promise<void> {
    await this.db
      .update(accountExports)
      .set({ status: "failed", error, finishedAt: at })
      .where(and(eq(accountExports.id, id), inArray(accountExports.status, ACTIVE)));
  }

  /**
   * Jobs whose process died: every queued or running one (`staleBefore` undefined: this is the
   * only instance), or those whose heartbeat (creation, for queued ones) is older than it.
   */
  async failInterrupted(error: string, at: Date, staleBefore?: Date): Promise<number> {
    const stale =
      staleBefore === undefined
        ? undefined
        : sql`coalesce(${accountExports.heartbeatAt}, ${accountExports.createdAt}) < ${staleBefore}`;
    const rows = await this.db
      .update(accountExports)
      .set({ status: "failed", error, finishedAt: at })
      .where(and(inArray(accountExports.status, ACTIVE), stale))
      .returning({ id: accountExports.id });
    return rows.length;
  }

  /** Done jobs past their expiry that still have an archive. */
  async expired(at: Date): Promise<{ id: string; filePath: string | null }[]> {
    return this.db
      .select({ id: accountExports.id, filePath: accountExports.filePath })
      .from(accountExports)
      .where(and(eq(accountExports.status, "done"), lte(accountExports.expiresAt, at)))
      .limit(1_000);
  }

  async markExpired(id: string): Promise<void> {
    await this.db.update(accountExports).set({ status: "expired", filePath: null }).where(eq(accountExports.id, id));
  }

  /** Jobs that may own files under DATA_DIR/exports (files of any other id are orphans). */
  async liveIds(): Promise<Set<string>> {
    const rows = await this.db
      .select({ id: accountExports.id })
      .from(accountExports)
      .where(or(isNotNull(accountExports.filePath), inArray(accountExports.status, ACTIVE)));
    return new Set(rows.map((r) => r.id));
  }

  async markDownloaded(id: string, at: Date): Promise<void> {
    await this.db.update(accountExports).set({ downloadedAt: at }).where(eq(accountExports.id, id));
  }

  /** Rows older than `before` that are finished (failed or expired): kept a while as a record, then dropped. */
  async purgeFinished(before: Date): Promise<number> {
    const rows = await this.db
      .delete(accountExports)
      .where(and(inArray(accountExports.status, ["failed", "expired"]), lt(accountExports.createdAt, before)))
      .returning({ id: accountExports.id });
    return rows.length;
  }

  async deleteCustomer(customerId: string): Promise<number> {
    const rows = await this.db
      .delete(accountExports)
      .where(eq(accountExports.customerId, customerId))
      .returning({ id: accountExports.id });
    return rows.length;
  }
}
