import { sql } from "drizzle-orm";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { ADVISORY_LOCKS } from "../../platform/db/advisory-locks.ts";
import type { Db } from "../../platform/db/client.ts";
import type { JobHandle } from "../../platform/jobs.ts";
import { RollupBatch, type RollupsRepo } from "./rollups.repo.ts";

/** Advisory lock of the analytics job and of rebuilds (arbitrary constant, distinct from the others). */
export const ANALYTICS_LOCK = ADVISORY_LOCKS.analyticsRollups;

const LOGS = "inference_logs";
const FEEDBACK = "feedback";

interface Logger {
  warn(obj: object, msg: string): void;
}

/**
 * Runs `fn` in a transaction holding a transaction-level advisory lock; with several instances
 * only one runs at a time and the others skip (false). The same pattern as the billing jobs.
 */
async function withLock(db: Db, fn: (tx: Db) => Promise<void>): Promise<boolean> {
  return db.transaction(async (tx) => {
    const res = await tx.execute<{ ok: boolean }>(sql`select pg_try_advisory_xact_lock(${ANALYTICS_LOCK}) as ok`);
    if ((res as unknown as { rows: { ok: boolean }[] }).rows[0]?.ok !== true) return false;
    await fn(tx as unknown as Db);
    return true;
  });
}

export interface StepResult {
  /** False when another instance held the lock. */
  readonly ran: boolean;
  readonly logs: number;
  readonly feedback: number;
}

export interface RollupJobOptions {
  readonly db: Db;
  readonly repo: RollupsRepo;
  /** Rows read per source table per step (one transaction). */
  readonly batchSize?: number;
  /** Steps per tick at most (a backlog is worked off over several ticks). */
  readonly maxStepsPerTick?: number;
  readonly registry?: Registry;
  readonly log?: Logger;
  /** Where each tick reports (platform.jobs). */
  readonly report?: JobHandle;
}

/**
 * Keeps the rollups up to date off the request path. Each step, in one transaction under the
 * advisory lock: read the next rows of inference_logs and feedback in (ingest_xid, id,
 * created_at) order, only those written by transactions older than the oldest still running
 * (so a batch-writer transaction that commits late is read when it has committed, never
 * skipped), aggregate them, merge them into the rollup rows, and move the watermarks. The
 * rollups and the watermarks commit together, so a restart or a second instance never counts a
 * row twice; a row lands in the buckets of its own created_at, however late it arrives.
 */
export class RollupJob {
  private readonly db: Db;
  private readonly repo: RollupsRepo;
  private readonly batchSize: number;
  private readonly maxSteps: number;
  private readonly log: Logger | undefined;
  private readonly report: JobHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly rows: Counter<"source"> | undefined;
  private readonly runs: Counter<"outcome"> | undefined;
  private readonly duration: Histogram | undefined;
  private readonly lastSuccess: Gauge | undefined;

  constructor(opts: RollupJobOptions) {
    this.db = opts.db;
    this.repo = opts.repo;
    this.batchSize = opts.batchSize ?? 5_000;
    this.maxSteps = opts.maxStepsPerTick ?? 20;
    this.log = opts.log;
    this.report = opts.report;
    const registers = opts.registry === undefined ? undefined : [opts.registry];
    if (registers !== undefined) {
      this.rows = new Counter({
        name: "vla_analytics_rollup_rows_total",
        help: "Rows counted into the analytics rollups, by source table.",
        labelNames: ["source"],
        registers,
      });
      this.runs = new Counter({
        name: "vla_analytics_rollup_steps_total",
        help: "Analytics job steps: ok, locked (another instance ran it) or failed.",
        labelNames: ["outcome"],
        registers,
      });
      this.duration = new Histogram({
        name: "vla_analytics_rollup_step_seconds",
        help: "Duration of one analytics job step (one transaction).",
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers,
      });
      this.lastSuccess = new Gauge({
        name: "vla_analytics_rollup_last_success_timestamp_seconds",
        help: "When the analytics job last finished a tick without error (Unix time).",
        registers,
      });
    }
  }

  /** One step: at most `batchSize` rows of each source table. */
  async step(): Promise<StepResult> {
    const end = this.duration?.startTimer();
    let logs = 0;
    let feedback = 0;
    const ran = await withLock(this.db, async (tx) => {
      const below = await this.repo.safeXid(tx);
      const batch = new RollupBatch();
      const l = await this.repo.logsAfter(tx, await this.repo.watermark(tx, LOGS), below, this.batchSize);
      for (const f of l.facts) batch.addLog(f);
      const f = await this.repo.feedbackAfter(tx, await this.repo.watermark(tx, FEEDBACK), below, this.batchSize);
      for (const x of f.facts) batch.addFeedback(x);
      await this.repo.flush(tx, batch);
      if (l.last !== undefined) await this.repo.setWatermark(tx, LOGS, l.last);
      if (f.last !== undefined) await this.repo.setWatermark(tx, FEEDBACK, f.last);
      logs = l.facts.length;
      feedback = f.facts.length;
    });
    end?.();
    this.runs?.inc({ outcome: ran ? "ok" : "locked" });
    if (logs > 0) this.rows?.inc({ source: LOGS }, logs);
    if (feedback > 0) this.rows?.inc({ source: FEEDBACK }, feedback);
    return { ran, logs, feedback };
  }

  /** Steps until caught up (or `maxSteps`); returns the rows counted. */
  async catchUp(maxSteps = this.maxSteps): Promise<{ logs: number; feedback: number }> {
    let logs = 0;
    let feedback = 0;
    for (let i = 0; i < maxSteps; i++) {
      const r = await this.step();
      logs += r.logs;
      feedback += r.feedback;
      if (!r.ran || (r.logs < this.batchSize && r.feedback < this.batchSize)) break;
    }
    return { logs, feedback };
  }

  /**
   * Recomputes the rollups of the UTC days [from, to) from the raw rows, in one transaction under
   * the job's lock: the rows the job has already counted (at or below its watermarks), so the
   * result equals what the incremental job built and the job goes on from there without counting
   * anything twice. `onProgress(done, total)` is called once per day.
   */
  async rebuild(
    from: Date,
    to: Date,
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ ran: boolean; logs: number; feedback: number }> {
    const days: Date[] = [];
    for (let d = from.getTime(); d < to.getTime(); d += 86_400_000) days.push(new Date(d));
    let logs = 0;
    let feedback = 0;
    const ran = await withLock(this.db, async (tx) => {
      const logMark = await this.repo.watermark(tx, LOGS);
      const fbMark = await this.repo.watermark(tx, FEEDBACK);
      await this.repo.clearRange(tx, from, to);
      const batch = new RollupBatch();
      let done = 0;
      onProgress?.(0, days.length);
      for (const day of days) {
        let after = "00000000-0000-0000-0000-000000000000";
        for (;;) {
          const page = await this.repo.logsOfDay(tx, day, logMark, after, 20_000);
          for (const f of page.facts) batch.addLog(f);
          if (page.lastId === undefined || page.scanned < 20_000) break;
          after = page.lastId;
        }
        onProgress?.(++done, days.length);
      }
      for (const f of await this.repo.feedbackOfRange(tx, from, to, fbMark)) batch.addFeedback(f);
      await this.repo.flush(tx, batch);
      logs = batch.logs;
      feedback = batch.feedback;
    });
    return { ran, logs, feedback };
  }

  start(intervalMs: number): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.runOnce(), intervalMs);
    this.timer.unref();
  }

  /** One tick (joins a tick in progress instead of overlapping it); failures are logged, retried next tick. */
  runOnce(): Promise<void> {
    this.running ??= (async () => {
      try {
        await (this.report === undefined ? this.catchUp() : this.report.run(() => this.catchUp()));
        this.lastSuccess?.setToCurrentTime();
      } catch (err) {
        this.runs?.inc({ outcome: "failed" });
        this.log?.warn({ err }, "analytics rollup step failed; retried at the next tick");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
