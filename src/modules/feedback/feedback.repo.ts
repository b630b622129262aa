import { and, desc, eq, gte, lt, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { beforeCursor, type PageCursor } from "../../platform/db/page-cursor.ts";
import {
  type FeedbackRow,
  feedback,
  type InferenceLogRow,
  inferenceLogs,
  type NewFeedbackRow,
} from "../../platform/db/schema/index.ts";
import { FAILURE_SEVERITIES, FAILURE_TYPES, FEEDBACK_TYPES, OBSERVED_ISSUES } from "./feedback.schemas.ts";

export interface FeedbackFilter {
  readonly type?: string | undefined;
  readonly robotId?: string | undefined;
  readonly model?: string | undefined;
  readonly inferenceId?: string | undefined;
  readonly from?: Date | undefined;
  readonly to?: Date | undefined;
}

/** Position after which the next page starts: the last row's (created_at, id). */
export type FeedbackCursor = PageCursor;

/** What feedback needs of an inference. */
export type InferenceRef = Pick<
  InferenceLogRow,
  "id" | "createdAt" | "customerId" | "robotId" | "model" | "source" | "status" | "action" | "actionChunk"
>;

/** One aggregate row of the stats query (a grouping set: overall, per model or per robot). */
export interface StatsRow {
  readonly dim: "all" | "model" | "robot";
  readonly key: string | null;
  readonly n: number;
  readonly [column: string]: number | string | null;
}

/** Data access for feedback (and the inference lookup it needs); framework-free. */
export class FeedbackRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /**
   * The customer's inference `id` created at or after `since`. The id is matched with the
   * customer, so another customer's inference is simply not found.
   */
  async findInference(customerId: string, id: string, since: Date): Promise<InferenceRef | undefined> {
    const t = inferenceLogs;
    const [row] = await this.db
      .select({
        id: t.id,
        createdAt: t.createdAt,
        customerId: t.customerId,
        robotId: t.robotId,
        model: t.model,
        source: t.source,
        status: t.status,
        action: t.action,
        actionChunk: t.actionChunk,
      })
      .from(t)
      .where(and(eq(t.id, id), eq(t.customerId, customerId), gte(t.createdAt, since)))
      .limit(1);
    return row;
  }

  /** Inserts unless the customer already used the idempotency key; undefined then. */
  async insert(row: NewFeedbackRow): Promise<FeedbackRow | undefined> {
    const [out] = await this.db
      .insert(feedback)
      .values(row)
      .onConflictDoNothing({
        target: [feedback.customerId, feedback.idempotencyKey],
        where: sql`${feedback.idempotencyKey} is not null`,
      })
      .returning();
    return out;
  }

  async byIdempotencyKey(customerId: string, key: string): Promise<FeedbackRow | undefined> {
    const [row] = await this.db
      .select()
      .from(feedback)
      .where(and(eq(feedback.customerId, customerId), eq(feedback.idempotencyKey, key)))
      .limit(1);
    return row;
  }

  /** Newest first; `limit + 1` rows are read so the caller knows whether another page exists. */
  async list(
    customerId: string,
    filter: FeedbackFilter,
    cursor: FeedbackCursor | undefined,
    limit: number,
  ): Promise<FeedbackRow[]> {
    const t = feedback;
    const conds = [eq(t.customerId, customerId), ...this.filterConds(filter)];
    if (filter.type !== undefined) conds.push(eq(t.type, filter.type));
    if (filter.inferenceId !== undefined) conds.push(eq(t.inferenceId, filter.inferenceId));
    if (cursor !== undefined) {
      conds.push(beforeCursor(t.createdAt, t.id, cursor));
    }
    return this.db
      .select()
      .from(t)
      .where(and(...conds))
      .orderBy(desc(t.createdAt), desc(t.id))
      .limit(limit + 1);
  }

  private filterConds(filter: FeedbackFilter) {
    const t = feedback;
    const conds = [];
    if (filter.robotId !== undefined) conds.push(eq(t.robotId, filter.robotId));
    if (filter.model !== undefined) conds.push(eq(t.model, filter.model));
    if (filter.from !== undefined) conds.push(gte(t.createdAt, filter.from));
    if (filter.to !== undefined) conds.push(lt(t.createdAt, filter.to));
    return conds;
  }

  /**
   * One pass over the customer's feedback in range, grouped three ways at once (GROUPING SETS):
   * overall, per model, per robot. Percentiles are exact (percentile_cont over the rows).
   */
  async stats(customerId: string, filter: FeedbackFilter): Promise<StatsRow[]> {
    const conds = [eq(feedback.customerId, customerId), ...this.filterConds(filter)];
    // Every literal below is a constant of this file, never input.
    const sqlCols: string[] = [];
    for (const type of FEEDBACK_TYPES) sqlCols.push(`count(*) filter (where type = '${type}')::int as "t_${type}"`);
    for (const type of ["success", "safety"]) {
      for (let r = 1; r <= 5; r++)
        sqlCols.push(`count(*) filter (where type = '${type}' and rating = ${r})::int as "r_${type}_${r}"`);
      sqlCols.push(`avg(rating) filter (where type = '${type}')::float8 as "mean_${type}"`);
    }
    for (const issue of OBSERVED_ISSUES) {
      sqlCols.push(`count(*) filter (where type = 'safety' and observed_issue = '${issue}')::int as "oi_${issue}"`);
    }
    for (const f of FAILURE_TYPES) {
      sqlCols.push(`count(*) filter (where type = 'failure' and failure_type = '${f}')::int as "ft_${f}"`);
    }
    for (const s of FAILURE_SEVERITIES) {
      sqlCols.push(`count(*) filter (where type = 'failure' and severity = '${s}')::int as "sev_${s}"`);
    }
    sqlCols.push(`count(error_translation)::int as "e_count"`);
    for (const part of ["translation", "rotation", "gripper"]) {
      const c = `error_${part}`;
      sqlCols.push(
        `avg(${c})::float8 as "e_${part}_mean"`,
        `percentile_cont(0.5) within group (order by ${c})::float8 as "e_${part}_p50"`,
        `percentile_cont(0.95) within group (order by ${c})::float8 as "e_${part}_p95"`,
        `max(${c})::float8 as "e_${part}_max"`,
      );
    }
    const res = await this.db.execute<StatsRow>(sql`
      select
        case when grouping(model) = 0 then 'model' when grouping(robot_id) = 0 then 'robot' else 'all' end as dim,
        case when grouping(model) = 0 then model else robot_id end as key,
        count(*)::int as n,
        ${sql.raw(sqlCols.join(",\n        "))}
      from ${feedback}
      where ${and(...conds)}
      group by grouping sets ((), (model), (robot_id))`);
    return (res as unknown as { rows: StatsRow[] }).rows;
  }

  async deleteCustomer(customerId: string): Promise<number> {
    const rows = await this.db
      .delete(feedback)
      .where(eq(feedback.customerId, customerId))
      .returning({ id: feedback.id });
    return rows.length;
  }

  /** A deleted user's feedback stays with the customer, unattributed. */
  async forgetUser(userId: string): Promise<number> {
    const rows = await this.db
      .update(feedback)
      .set({ userId: null })
      .where(eq(feedback.userId, userId))
      .returning({ id: feedback.id });
    return rows.length;
  }
}
