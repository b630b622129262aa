import { sql } from "drizzle-orm";
import { Counter, type Registry } from "prom-client";
import { ADVISORY_LOCKS } from "../../platform/db/advisory-locks.ts";
import type { Db } from "../../platform/db/client.ts";
import type { JobHandle, JobRegistry } from "../../platform/jobs.ts";

interface Logger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Advisory lock ids of billing jobs (src/platform/db/advisory-locks.ts). */
export const BILLING_LOCKS = {
  grace: ADVISORY_LOCKS.billingGrace,
  outbox: ADVISORY_LOCKS.billingOutbox,
  overage: ADVISORY_LOCKS.billingOverage,
  alerts: ADVISORY_LOCKS.billingAlerts,
} as const;

/**
 * Runs `fn` inside a transaction holding a PostgreSQL transaction-level advisory lock, so with
 * several instances only one runs a job at a time; the others skip this tick (false).
 */
export async function withJobLock(db: Db, lockId: number, fn: (tx: Db) => Promise<void>): Promise<boolean> {
  return db.transaction(async (tx) => {
    const res = await tx.execute<{ ok: boolean }>(sql`select pg_try_advisory_xact_lock(${lockId}) as ok`);
    const row = (res as unknown as { rows: { ok: boolean }[] }).rows[0];
    if (row?.ok !== true) return false;
    await fn(tx as unknown as Db);
    return true;
  });
}

export interface BillingTask {
  readonly name: string;
  run(): Promise<void>;
}

/**
 * The billing job: every `intervalMs` it runs each task in turn (grace expiry, Stripe erasure
 * outbox, overage reports, quota alerts). A failing task is logged and counted and never stops
 * the others; `runOnce()` is the test seam.
 */
export class BillingJobs {
  private readonly tasks: { task: BillingTask; handle: JobHandle | undefined }[] = [];
  private readonly jobs: JobRegistry | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly failures: Counter;
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(opts: { intervalMs: number; log: Logger; registry: Registry; jobs?: JobRegistry }) {
    this.intervalMs = opts.intervalMs;
    this.jobs = opts.jobs;
    this.log = opts.log;
    this.failures = new Counter({
      name: "vla_billing_job_failures_total",
      help: "Billing job task runs that failed (retried at the next tick), by task.",
      labelNames: ["task"],
      registers: [opts.registry],
    });
  }

  add(task: BillingTask): void {
    this.tasks.push({ task, handle: this.jobs?.register(`billing.${task.name}`, this.intervalMs) });
  }

  start(): void {
    if (this.timer !== undefined || this.tasks.length === 0) return;
    this.timer = setInterval(() => void this.runOnce(), this.intervalMs);
    this.timer.unref();
  }

  /** Runs every task once (joins a run in progress instead of overlapping it). */
  runOnce(): Promise<void> {
    this.running ??= (async () => {
      try {
        for (const { task, handle } of this.tasks) {
          try {
            await (handle === undefined ? task.run() : handle.run(() => task.run()));
          } catch (err) {
            this.failures.inc({ task: task.name });
            this.log.warn({ err, task: task.name }, "billing job task failed; retried at the next tick");
          }
        }
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
