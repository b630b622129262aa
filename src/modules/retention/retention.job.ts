import { Counter, Gauge, type Registry } from "prom-client";
import { ADVISORY_LOCKS } from "../../platform/db/advisory-locks.ts";
import type { Database } from "../../platform/db/client.ts";
import type { ObjectStore } from "../../platform/object-store.ts";
import { STRIPE_EVENT_RETENTION_DAYS } from "../billing/webhook.repo.ts";
import { type ConsentTier, TIER_PERMISSIONS, TIER_RETENTION_DAYS } from "../consent/consent-policy.ts";
import { ContextMetadataRepo } from "../context/context-metadata.repo.ts";
import { customerImagePrefix } from "../context/image-uploads.ts";
import { partitionEnd, RETAINED_TABLES, type RetainedTable, RetentionRepo } from "./retention.repo.ts";

/** Advisory lock id of the retention job (arbitrary constant, distinct from the others). */
export const RETENTION_LOCK = ADVISORY_LOCKS.retention;

const DAY_MS = 86_400_000;

export type RetainedTableName = RetainedTable["name"];

/** What one run deleted (or, dry, would delete). */
export interface RetentionReport {
  /** False: another instance held the lock; nothing was done. */
  readonly ran: boolean;
  readonly dryRun: boolean;
  /** Rows deleted row by row per table (dry run: rows that would be). */
  readonly rows: Record<RetainedTableName, number>;
  /** instruction_analytics rows whose instruction text was cleared (dry run: would be); counts stay. */
  readonly instructionTextsCleared: number;
  /** Monthly inference_logs partitions detached and dropped (dry run: that would be). */
  readonly partitions: string[];
  /** context_metadata rows deleted past retention (dry run: would be). */
  readonly contextRows: number;
  /**
   * Stored images deleted: past retention and named by no remaining row, or of a customer whose
   * consent no longer allows images (dry run: rows that name one, which a run would clear).
   */
  readonly imagesDeleted: number;
  /** context_metadata rows whose image_key was cleared because `store_images` no longer applies. */
  readonly imageKeysCleared: number;
  /** stripe_events rows (webhook deduplication) deleted STRIPE_EVENT_RETENTION_DAYS after receipt (dry run: would be). */
  readonly stripeEvents: number;
  readonly customers: number;
  readonly durationMs: number;
}

export interface RetentionMetrics {
  readonly rowsDeleted: Counter<"table">;
  readonly instructionTextsCleared: Counter;
  readonly partitionsDropped: Counter;
  readonly imagesDeleted: Counter<"reason">;
  readonly lastRun: Gauge;
  readonly lastDuration: Gauge;
}

export function createRetentionMetrics(registry: Registry): RetentionMetrics {
  return {
    rowsDeleted: new Counter({
      name: "vla_retention_rows_deleted_total",
      help: "Rows the retention job deleted, by table: past their customer's retention_days, or (stripe_events) past the webhook deduplication window.",
      labelNames: ["table"],
      registers: [registry],
    }),
    instructionTextsCleared: new Counter({
      name: "vla_retention_instruction_texts_cleared_total",
      help: "instruction_analytics rows past their customer's retention whose instruction text the retention job cleared.",
      registers: [registry],
    }),
    partitionsDropped: new Counter({
      name: "vla_retention_partitions_dropped_total",
      help: "Monthly inference_logs partitions the retention job detached and dropped.",
      registers: [registry],
    }),
    imagesDeleted: new Counter({
      name: "vla_retention_images_deleted_total",
      help: "Stored images the retention job deleted, by reason: retention (past retention_days) or consent (store_images no longer applies).",
      labelNames: ["reason"],
      registers: [registry],
    }),
    lastRun: new Gauge({
      name: "vla_retention_last_run_timestamp_seconds",
      help: "When the retention job last finished a run (Unix seconds).",
      registers: [registry],
    }),
    lastDuration: new Gauge({
      name: "vla_retention_last_run_duration_seconds",
      help: "How long the retention job's last run took.",
      registers: [registry],
    }),
  };
}

export interface RetentionJobOptions {
  readonly database: Database;
  readonly now: () => number;
  readonly defaultTier: ConsentTier;
  readonly batchSize: number;
  readonly metrics?: RetentionMetrics;
  /** Where stored images live; without one, context_metadata rows are still deleted and no object is touched. */
  readonly objectStore?: ObjectStore;
}

export interface RunOptions {
  readonly dryRun?: boolean;
  /** Called after each customer: customers done, customers in all. */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Deletes, per customer, inference logs, safety incidents and feedback older than the customer's
 * consent `retention_days` (its default tier's for a customer without a version), in batches of
 * `batchSize` rows per statement, each its own transaction. A monthly inference_logs partition
 * that ends before every customer's cutoff (the longest retention of all) is detached and dropped
 * whole instead. Webhook deduplication records (stripe_events) go after STRIPE_EVENT_RETENTION_DAYS.
 * One instance at a time (session advisory lock on a connection of its own).
 */
export class RetentionJob {
  private readonly o: RetentionJobOptions;
  private readonly repo: RetentionRepo;
  private readonly context: ContextMetadataRepo;
  private running: Promise<RetentionReport> | undefined;
  private stopping = false;

  constructor(o: RetentionJobOptions) {
    this.o = o;
    this.repo = new RetentionRepo(o.database.db);
    this.context = new ContextMetadataRepo(o.database.db);
  }

  /**
   * Ends a run in progress after its current statement (shutdown); what it deleted so far stays
   * deleted and the next run carries on. Later runs do nothing.
   */
  stop(): Promise<unknown> {
    this.stopping = true;
    return this.running ?? Promise.resolve();
  }

  /** Runs once; a call while a run is in progress in this process joins it. */
  run(opts: RunOptions = {}): Promise<RetentionReport> {
    this.running ??= this.runLocked(opts).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async runLocked(opts: RunOptions): Promise<RetentionReport> {
    const started = performance.now();
    let report: RetentionReport | undefined;
    const ran = await this.o.database.withSessionLock(RETENTION_LOCK, async () => {
      report = await this.pass(opts.dryRun === true, opts.onProgress, started);
    });
    if (!ran || report === undefined) {
      return {
        ran: false,
        dryRun: opts.dryRun === true,
        rows: { inference_logs: 0, safety_incidents: 0, feedback: 0, shadow_results: 0 },
        instructionTextsCleared: 0,
        partitions: [],
        contextRows: 0,
        imagesDeleted: 0,
        imageKeysCleared: 0,
        stripeEvents: 0,
        customers: 0,
        durationMs: performance.now() - started,
      };
    }
    return report;
  }

  private async pass(dryRun: boolean, onProgress: RunOptions["onProgress"], started: number): Promise<RetentionReport> {
    const now = this.o.now();
    const customers = await this.repo.customers(new Date(now));
    const defaultDays = TIER_RETENTION_DAYS[this.o.defaultTier];
    const days = customers.map((c) => c.retentionDays ?? defaultDays);
    // The default counts even with every customer on a version: a customer created later starts on it.
    const longest = Math.max(defaultDays, ...days);
    const allCutoff = now - longest * DAY_MS;

    const partitions: string[] = [];
    for (const name of await this.repo.monthPartitions()) {
      if (this.stopping) break;
      const end = partitionEnd(name);
      if (end === undefined || end.getTime() > allCutoff) continue;
      if (!dryRun) {
        await this.repo.dropPartition(name);
        this.o.metrics?.partitionsDropped.inc();
      }
      partitions.push(name);
    }

    const stripeEvents = await this.stripeEvents(new Date(now - STRIPE_EVENT_RETENTION_DAYS * DAY_MS), dryRun);

    const rows: Record<RetainedTableName, number> = {
      inference_logs: 0,
      safety_incidents: 0,
      feedback: 0,
      shadow_results: 0,
    };
    let instructionTextsCleared = 0;
    const images = { contextRows: 0, imagesDeleted: 0, imageKeysCleared: 0 };
    const withImages = new Set(await this.context.customersWithImages());
    const defaultImages = TIER_PERMISSIONS[this.o.defaultTier].store_images;
    onProgress?.(0, customers.length);
    for (const [i, c] of customers.entries()) {
      if (this.stopping) break;
      const before = new Date(now - (days[i] as number) * DAY_MS);
      for (const table of RETAINED_TABLES) {
        if (dryRun) {
          rows[table.name] += await this.repo.count(table, c.customerId, before, partitions);
          continue;
        }
        for (;;) {
          const n = await this.repo.deleteBatch(table, c.customerId, before, this.o.batchSize);
          rows[table.name] += n;
          this.o.metrics?.rowsDeleted.inc({ table: table.name }, n);
          if (n < this.o.batchSize || this.stopping) break;
        }
      }
      // The instruction rollup keeps counts past retention, not the text (whole UTC days before the cutoff).
      const beforeDay = before.toISOString().slice(0, 10);
      if (dryRun) instructionTextsCleared += await this.repo.countInstructions(c.customerId, beforeDay);
      else {
        for (;;) {
          const n = await this.repo.clearInstructionBatch(c.customerId, beforeDay, this.o.batchSize);
          instructionTextsCleared += n;
          this.o.metrics?.instructionTextsCleared.inc(n);
          if (n < this.o.batchSize || this.stopping) break;
        }
      }
      await this.images(c.customerId, before, dryRun, images);
      if (withImages.has(c.customerId) && !(c.storeImages ?? defaultImages) && !this.stopping) {
        await this.withdrawImages(c.customerId, dryRun, images);
      }
      onProgress?.(i + 1, customers.length);
    }
    const durationMs = performance.now() - started;
    // A run cut short by stop() is not a finished run.
    if (!dryRun && !this.stopping) {
      this.o.metrics?.lastRun.set(now / 1000);
      this.o.metrics?.lastDuration.set(durationMs / 1000);
    }
    return {
      ran: true,
      dryRun,
      rows,
      instructionTextsCleared,
      partitions,
      ...images,
      stripeEvents,
      customers: customers.length,
      durationMs,
    };
  }

  /**
   * Webhook deduplication records no redelivery can need any more (STRIPE_EVENT_RETENTION_DAYS):
   * not customer data, so one window for all, by receipt time.
   */
  private async stripeEvents(before: Date, dryRun: boolean): Promise<number> {
    if (dryRun) return this.repo.countStripeEvents(before);
    let total = 0;
    for (;;) {
      if (this.stopping) break;
      const n = await this.repo.deleteStripeEventsBatch(before, this.o.batchSize);
      total += n;
      this.o.metrics?.rowsDeleted.inc({ table: "stripe_events" }, n);
      if (n < this.o.batchSize) break;
    }
    return total;
  }

  /**
   * context_metadata rows past the cutoff, batch by batch; each batch's image objects are deleted
   * unless a remaining row of the customer still names them (the same image sent again later is
   * one object: content-addressed).
   */
  private async images(
    customerId: string,
    before: Date,
    dryRun: boolean,
    out: { contextRows: number; imagesDeleted: number },
  ): Promise<void> {
    if (dryRun) {
      out.contextRows += await this.context.countExpired(customerId, before);
      return;
    }
    for (;;) {
      const { deleted, imageKeys } = await this.context.deleteExpiredBatch(customerId, before, this.o.batchSize);
      out.contextRows += deleted;
      this.o.metrics?.rowsDeleted.inc({ table: "context_metadata" }, deleted);
      const store = this.o.objectStore;
      if (store !== undefined && imageKeys.length > 0) {
        const inUse = await this.context.keysInUse(customerId, imageKeys);
        for (const key of imageKeys) {
          if (inUse.has(key)) continue;
          await store.delete(key);
          out.imagesDeleted += 1;
          this.o.metrics?.imagesDeleted.inc({ reason: "retention" });
        }
      }
      if (deleted < this.o.batchSize || this.stopping) break;
    }
  }

  /**
   * The customer's consent no longer allows images (withdrawn, narrowed, expired, anonymization
   * `full`): every stored object under its prefix is deleted, then the rows' image_key cleared
   * (objects first: a run cut short leaves keys that the next run finds again).
   */
  private async withdrawImages(
    customerId: string,
    dryRun: boolean,
    out: { imagesDeleted: number; imageKeysCleared: number },
  ): Promise<void> {
    if (dryRun) {
      out.imageKeysCleared += await this.context.countImageKeys(customerId);
      return;
    }
    const store = this.o.objectStore;
    if (store !== undefined) {
      for await (const key of store.list(customerImagePrefix(customerId))) {
        await store.delete(key);
        out.imagesDeleted += 1;
        this.o.metrics?.imagesDeleted.inc({ reason: "consent" });
        if (this.stopping) return;
      }
    }
    for (;;) {
      const n = await this.context.clearImageKeysBatch(customerId, this.o.batchSize);
      out.imageKeysCleared += n;
      if (n < this.o.batchSize || this.stopping) break;
    }
  }
}
