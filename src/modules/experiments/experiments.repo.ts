import { and, desc, eq, isNull, lte, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { beforeCursor, type PageCursor } from "../../platform/db/page-cursor.ts";
import {
  type ExperimentRow,
  type ExperimentVariant,
  experiments,
  type ShadowResultRow,
  shadowResults,
} from "../../platform/db/schema/index.ts";
import { isUniqueViolation } from "../users/users.repo.ts";

export interface NewExperiment {
  readonly customerId: string;
  readonly name: string;
  readonly mode: "split" | "shadow";
  readonly assignment: "robot_id" | "request" | null;
  readonly variants: ExperimentVariant[] | null;
  readonly candidateModel: string | null;
  readonly sampleRate: number | null;
  readonly startsAt: Date | null;
  readonly endsAt: Date | null;
  readonly createdByUserId: string | null;
  readonly createdByApiKeyId: string | null;
}

export type { PageCursor } from "../../platform/db/page-cursor.ts";

/** One shadowed request as the batch writer carries it (plain JSON: journaled rows come back parsed). */
export interface ShadowEntry {
  readonly id: string;
  readonly createdAt: string;
  readonly experimentId: string;
  readonly customerId: string;
  readonly inferenceId: string;
  readonly robotId: string | null;
  readonly instructionKey: string | null;
  readonly servedModel: string;
  readonly candidateModel: string;
  readonly servedAction: number[];
  readonly servedSafetyStatus: string | null;
  readonly candidateAction: number[] | null;
  readonly candidateSafetyStatus: string | null;
  readonly translation: number | null;
  readonly rotation: number | null;
  readonly gripper: number | null;
  readonly candidateMs: number | null;
  readonly errorCode: string | null;
}

/**
 * The span of inference_logs.created_at an experiment's rows can have: bounds the results queries
 * so PostgreSQL prunes the monthly partitions outside it (and reads only the experiment's).
 */
export interface LogWindow {
  readonly from: Date;
  /** Null while the experiment may still route. */
  readonly until: Date | null;
}

/** The window as SQL conditions on a timestamp column. */
function inWindow(column: string, w: LogWindow) {
  const c = sql.raw(column);
  return w.until === null
    ? sql`${c} >= ${w.from.toISOString()}::timestamptz`
    : sql`${c} >= ${w.from.toISOString()}::timestamptz and ${c} < ${w.until.toISOString()}::timestamptz`;
}

export interface ShadowFilter {
  readonly robotId?: string | undefined;
  readonly instructionKey?: string | undefined;
}

/** Per variant: requests, errors, latency over successful ones and the safety verdicts. */
export interface VariantRequestRow {
  variant: string;
  n: number;
  errors: number;
  mean_ms: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  pass: number;
  clamped: number;
  rejected: number;
  emergency_stop: number;
  not_evaluated: number;
}

/** Per variant: success ratings (count, mean), safety ratings and corrections. */
export interface VariantFeedbackRow {
  variant: string;
  rated: number;
  rating_mean: number | null;
  safety_rated: number;
  safety_mean: number | null;
  corrections: number;
  translation_mean: number | null;
  rotation_mean: number | null;
  gripper_mean: number | null;
}

/**
 * Per variant, one value per inference: inferences with a reported outcome and how many
 * succeeded; inferences with success ratings and the mean and sample variance of their mean
 * rating (the unit the rating test compares: ratings of one inference are not independent).
 */
export interface VariantOutcomeRow {
  variant: string;
  outcomes: number;
  successes: number;
  rated_inferences: number;
  rating_mean: number | null;
  rating_var: number | null;
}

/**
 * Per variant, the outcome and rating sums grouped by robot (inferences without a robot id are a
 * unit each): the inputs of the cluster-robust test (stats.ts, ClusteredSample).
 */
export interface VariantUnitRow {
  variant: string;
  rating_units: number;
  rating_n: number;
  rating_sum: number | null;
  rating_sum_sq: number | null;
  rating_cross: number | null;
  rating_count_sq: number | null;
  outcome_units: number;
  outcome_n: number;
  outcome_sum: number | null;
  outcome_sum_sq: number | null;
  outcome_cross: number | null;
  outcome_count_sq: number | null;
}

export interface ShadowSummaryRow {
  n: number;
  errors: number;
  translation_mean: number | null;
  translation_p95: number | null;
  rotation_mean: number | null;
  rotation_p95: number | null;
  gripper_mean: number | null;
  gripper_p95: number | null;
  candidate_ms_mean: number | null;
  pass: number;
  clamped: number;
  rejected: number;
  emergency_stop: number;
  not_evaluated: number;
}

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

const VERDICTS = (col: string) =>
  sql.raw(
    ["pass", "clamped", "rejected", "emergency_stop", "not_evaluated"]
      .map((s) => `count(*) filter (where ${col} = '${s}')::int as "${s}"`)
      .join(", "),
  );

/** Data access for experiments and shadow_results; framework-free. */
export class ExperimentsRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /**
   * Inserts the experiment; null when the customer already has a not-stopped one of this mode (the
   * partial unique index). One whose `ends_at` has passed is marked stopped first, in the same
   * transaction, so it does not block the next.
   */
  async insert(row: NewExperiment, now: Date): Promise<ExperimentRow | null> {
    try {
      return await this.db.transaction(async (tx) => {
        await tx
          .update(experiments)
          .set({ stoppedAt: sql`${experiments.endsAt}` })
          .where(
            and(
              eq(experiments.customerId, row.customerId),
              eq(experiments.mode, row.mode),
              isNull(experiments.stoppedAt),
              lte(experiments.endsAt, now),
            ),
          );
        const [created] = await tx.insert(experiments).values(row).returning();
        if (created === undefined) throw new Error("insert returned no row");
        return created;
      });
    } catch (e) {
      if (isUniqueViolation(e)) return null;
      throw e;
    }
  }

  async get(customerId: string, id: string): Promise<ExperimentRow | undefined> {
    const [row] = await this.db
      .select()
      .from(experiments)
      .where(and(eq(experiments.customerId, customerId), eq(experiments.id, id)));
    return row;
  }

  /** Newest first; `limit + 1` rows so the caller knows whether a next page exists. */
  async list(customerId: string, cursor: PageCursor | undefined, limit: number): Promise<ExperimentRow[]> {
    const t = experiments;
    const conds = [eq(t.customerId, customerId)];
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

  /** The customer's experiments that are neither stopped nor ended (scheduled ones included). */
  async active(customerId: string, now: Date): Promise<ExperimentRow[]> {
    const t = experiments;
    return this.db
      .select()
      .from(t)
      .where(
        and(
          eq(t.customerId, customerId),
          isNull(t.stoppedAt),
          sql`(${t.endsAt} is null or ${t.endsAt} > ${now.toISOString()}::timestamptz)`,
        ),
      );
  }

  /** Sets stopped_at when still unset; the row as it is afterwards (undefined: not the customer's). */
  async stop(customerId: string, id: string, now: Date): Promise<ExperimentRow | undefined> {
    await this.db
      .update(experiments)
      .set({ stoppedAt: now })
      .where(and(eq(experiments.customerId, customerId), eq(experiments.id, id), isNull(experiments.stoppedAt)));
    return this.get(customerId, id);
  }

  async requestStats(customerId: string, experimentId: string, w: LogWindow): Promise<VariantRequestRow[]> {
    const res = await this.db.execute(sql`
      select variant, count(*)::int as n, count(*) filter (where status = 'error')::int as errors,
        avg(total_ms) filter (where status = 'ok')::float8 as mean_ms,
        percentile_cont(0.5) within group (order by total_ms) filter (where status = 'ok')::float8 as p50_ms,
        percentile_cont(0.95) within group (order by total_ms) filter (where status = 'ok')::float8 as p95_ms,
        ${VERDICTS("safety_status")}
      from inference_logs
      where customer_id = ${customerId} and experiment_id = ${experimentId} and ${inWindow("created_at", w)}
      group by variant`);
    return rowsOf<VariantRequestRow>(res);
  }

  /** Feedback joined to the experiment's inferences by inference id (both of this customer). */
  async feedbackStats(customerId: string, experimentId: string, w: LogWindow): Promise<VariantFeedbackRow[]> {
    const res = await this.db.execute(sql`
      with l as (
        select id, variant from inference_logs
        where customer_id = ${customerId} and experiment_id = ${experimentId} and ${inWindow("created_at", w)}
      )
      select l.variant,
        count(*) filter (where f.type = 'success')::int as rated,
        avg(f.rating) filter (where f.type = 'success')::float8 as rating_mean,
        count(*) filter (where f.type = 'safety')::int as safety_rated,
        avg(f.rating) filter (where f.type = 'safety')::float8 as safety_mean,
        count(*) filter (where f.type = 'correction')::int as corrections,
        avg(f.error_translation) filter (where f.type = 'correction')::float8 as translation_mean,
        avg(f.error_rotation) filter (where f.type = 'correction')::float8 as rotation_mean,
        avg(f.error_gripper) filter (where f.type = 'correction')::float8 as gripper_mean
      from feedback f join l on l.id = f.inference_id
      where f.customer_id = ${customerId} and ${inWindow("f.inference_created_at", w)}
      group by l.variant`);
    return rowsOf<VariantFeedbackRow>(res);
  }

  /**
   * Per inference with a reported outcome (a `success` rating or a `failure` report): a success
   * when no failure was reported and its mean success rating is at least 4; and the per-inference
   * mean success ratings.
   */
  async outcomeStats(customerId: string, experimentId: string, w: LogWindow): Promise<VariantOutcomeRow[]> {
    const res = await this.db.execute(sql`
      with l as (
        select id, variant from inference_logs
        where customer_id = ${customerId} and experiment_id = ${experimentId} and ${inWindow("created_at", w)}
      ), per_inference as (
        select l.variant, f.inference_id, bool_or(f.type = 'failure') as failed,
          avg(f.rating) filter (where f.type = 'success') as rating
        from feedback f join l on l.id = f.inference_id
        where f.customer_id = ${customerId} and f.type in ('success', 'failure') and ${inWindow("f.inference_created_at", w)}
        group by l.variant, f.inference_id
      )
      select variant, count(*)::int as outcomes,
        count(*) filter (where not failed and rating >= 4)::int as successes,
        count(rating)::int as rated_inferences, avg(rating)::float8 as rating_mean,
        var_samp(rating)::float8 as rating_var
      from per_inference group by variant`);
    return rowsOf<VariantOutcomeRow>(res);
  }

  /**
   * outcomeStats grouped by robot first: per robot (or per inference without a robot id) its
   * rated inferences m and the sum S of their mean ratings, its inferences with an outcome and
   * their successes; then per variant the sums ΣS, ΣS², ΣS·m, Σm² over those units.
   */
  async unitStats(customerId: string, experimentId: string, w: LogWindow): Promise<VariantUnitRow[]> {
    const res = await this.db.execute(sql`
      with l as (
        select id, variant, coalesce(robot_id, id::text) as unit from inference_logs
        where customer_id = ${customerId} and experiment_id = ${experimentId} and ${inWindow("created_at", w)}
      ), per_inference as (
        select l.variant, l.unit, f.inference_id, bool_or(f.type = 'failure') as failed,
          avg(f.rating) filter (where f.type = 'success') as rating
        from feedback f join l on l.id = f.inference_id
        where f.customer_id = ${customerId} and f.type in ('success', 'failure') and ${inWindow("f.inference_created_at", w)}
        group by l.variant, l.unit, f.inference_id
      ), per_unit as (
        select variant, unit,
          count(rating)::float8 as rm, sum(rating)::float8 as rs,
          count(*)::float8 as om, (count(*) filter (where not failed and rating >= 4))::float8 as os
        from per_inference group by variant, unit
      )
      select variant,
        (count(*) filter (where rm > 0))::int as rating_units, sum(rm)::int as rating_n,
        sum(rs) as rating_sum, sum(rs * rs) as rating_sum_sq, sum(rs * rm) as rating_cross,
        sum(rm * rm) as rating_count_sq,
        count(*)::int as outcome_units, sum(om)::int as outcome_n,
        sum(os) as outcome_sum, sum(os * os) as outcome_sum_sq, sum(os * om) as outcome_cross,
        sum(om * om) as outcome_count_sq
      from per_unit group by variant`);
    return rowsOf<VariantUnitRow>(res);
  }

  async insertShadow(rows: readonly ShadowEntry[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db
      .insert(shadowResults)
      .values(rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt) })))
      .onConflictDoNothing();
  }

  private shadowConds(experimentId: string, filter: ShadowFilter) {
    const t = shadowResults;
    const conds = [eq(t.experimentId, experimentId)];
    if (filter.robotId !== undefined) conds.push(eq(t.robotId, filter.robotId));
    if (filter.instructionKey !== undefined) conds.push(eq(t.instructionKey, filter.instructionKey));
    return conds;
  }

  async listShadow(
    experimentId: string,
    filter: ShadowFilter,
    cursor: PageCursor | undefined,
    limit: number,
  ): Promise<ShadowResultRow[]> {
    const t = shadowResults;
    const conds = this.shadowConds(experimentId, filter);
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

  async shadowSummary(experimentId: string, filter: ShadowFilter): Promise<ShadowSummaryRow> {
    const part = (c: string) =>
      sql.raw(
        `avg(${c})::float8 as "${c}_mean", percentile_cont(0.95) within group (order by ${c})::float8 as "${c}_p95"`,
      );
    const res = await this.db.execute(sql`
      select count(*)::int as n, count(error_code)::int as errors,
        ${part("translation")}, ${part("rotation")}, ${part("gripper")},
        avg(candidate_ms)::float8 as candidate_ms_mean,
        ${VERDICTS("candidate_safety_status")}
      from shadow_results where ${and(...this.shadowConds(experimentId, filter))}`);
    return rowsOf<ShadowSummaryRow>(res)[0] as ShadowSummaryRow;
  }

  /** A deleted user's experiments stay the customer's, unattributed. */
  async forgetUser(userId: string): Promise<number> {
    const rows = await this.db
      .update(experiments)
      .set({ createdByUserId: null })
      .where(eq(experiments.createdByUserId, userId))
      .returning({ id: experiments.id });
    return rows.length;
  }

  /** GDPR erasure of the customer's data: shadow records (experiments are configuration, they go with the customer row). */
  async deleteShadowOfCustomer(customerId: string): Promise<number> {
    const rows = await this.db
      .delete(shadowResults)
      .where(eq(shadowResults.customerId, customerId))
      .returning({ id: shadowResults.id });
    return rows.length;
  }
}
