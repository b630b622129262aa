import { AppError, errors } from "../../platform/errors.ts";
import type { BatchingSettings } from "../models/registry.ts";

/**
 * Per-model batching queue.
 *
 * - Requests wait in per-customer sub-queues; a batch is formed by taking one request from
 *   each customer in turn (round-robin), so one tenant's burst cannot starve another's.
 * - An idle model (no batch running) gets what waits at once: a lone request never waits for
 *   company, and what arrived while the previous batch ran goes as the next batch as soon as it
 *   ends. So batches form under load only, from requests that would have waited anyway.
 * - While a batch runs and another may start (`maxConcurrentBatches` > 1), the next batch goes
 *   as soon as `maxBatchSize` requests wait or the oldest has waited `maxWaitMs`. At most
 *   `maxConcurrentBatches` run at once.
 * - The queue is bounded (`maxQueue`): overflow is 503 model_overloaded with Retry-After.
 * - Each request has a deadline (`timeoutMs`, queue time included): 504 inference_timeout.
 */
export interface SchedulerHooks {
  onDepth?(depth: number): void;
  onQueueWait?(ms: number): void;
  onBatch?(size: number, ms: number): void;
}

export interface Scheduled<O> {
  readonly output: O;
  readonly queueMs: number;
  readonly modelMs: number;
  readonly batchSize: number;
}

interface Entry<I, O> {
  readonly customer: string;
  readonly item: I;
  readonly enqueuedAt: number;
  readonly resolve: (v: Scheduled<O>) => void;
  readonly reject: (e: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

export type BatchRunner<I, O> = (items: readonly I[]) => Promise<(O | Error)[]>;

export class BatchScheduler<I, O> {
  private readonly queues = new Map<string, Entry<I, O>[]>();
  /** Customers with waiting requests, in round-robin order; `cursor` is the next to serve. */
  private ring: string[] = [];
  private cursor = 0;
  private queued = 0;
  private running = 0;
  private waitTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly inflight = new Set<Promise<void>>();
  private avgBatchMs = 0;
  private readonly modelId: string;
  private readonly settings: BatchingSettings;
  private readonly run: BatchRunner<I, O>;
  private readonly hooks: SchedulerHooks;

  constructor(modelId: string, settings: BatchingSettings, run: BatchRunner<I, O>, hooks: SchedulerHooks = {}) {
    this.modelId = modelId;
    this.settings = settings;
    this.run = run;
    this.hooks = hooks;
  }

  /** Requests waiting (not yet dispatched). */
  get depth(): number {
    return this.queued;
  }

  get runningBatches(): number {
    return this.running;
  }

  submit(customer: string, item: I, timeoutMs: number = this.settings.timeoutMs): Promise<Scheduled<O>> {
    if (this.closed) return Promise.reject(errors.modelUnavailable(this.modelId, "the server is shutting down"));
    if (this.queued >= this.settings.maxQueue) {
      const batchesAhead = Math.ceil(this.queued / this.settings.maxBatchSize / this.settings.maxConcurrentBatches);
      return Promise.reject(errors.modelOverloaded(this.modelId, (batchesAhead * this.avgBatchMs) / 1000));
    }
    return new Promise<Scheduled<O>>((resolve, reject) => {
      const entry: Entry<I, O> = {
        customer,
        item,
        enqueuedAt: performance.now(),
        resolve,
        reject,
        timer: undefined,
        settled: false,
      };
      entry.timer = setTimeout(() => this.expire(entry, timeoutMs), timeoutMs);
      let q = this.queues.get(customer);
      if (q === undefined) {
        q = [];
        this.queues.set(customer, q);
        this.ring.push(customer);
      }
      q.push(entry);
      this.queued += 1;
      this.hooks.onDepth?.(this.queued);
      this.pump();
    });
  }

  private expire(entry: Entry<I, O>, timeoutMs: number): void {
    if (entry.settled) return;
    entry.settled = true;
    const q = this.queues.get(entry.customer);
    const i = q?.indexOf(entry) ?? -1;
    if (q !== undefined && i >= 0) {
      q.splice(i, 1);
      this.queued -= 1;
      if (q.length === 0) this.dropCustomer(entry.customer);
      this.hooks.onDepth?.(this.queued);
    }
    entry.reject(errors.inferenceTimeout(this.modelId, timeoutMs));
  }

  private dropCustomer(customer: string): void {
    this.queues.delete(customer);
    const i = this.ring.indexOf(customer);
    if (i >= 0) {
      this.ring.splice(i, 1);
      if (i < this.cursor) this.cursor -= 1;
      if (this.cursor >= this.ring.length) this.cursor = 0;
    }
  }

  private oldestWaitMs(now: number): number {
    let oldest = now;
    for (const q of this.queues.values()) {
      const first = q[0];
      if (first !== undefined && first.enqueuedAt < oldest) oldest = first.enqueuedAt;
    }
    return now - oldest;
  }

  /** Dispatches every batch that may go now; otherwise arms the max-wait timer. */
  private pump(): void {
    while (this.queued > 0 && this.running < this.settings.maxConcurrentBatches) {
      // Idle: waiting longer cannot make this batch start sooner, only later.
      if (this.running === 0 || this.queued >= this.settings.maxBatchSize) {
        this.dispatch(this.take());
        continue;
      }
      const waited = this.oldestWaitMs(performance.now());
      if (waited < this.settings.maxWaitMs) {
        if (this.waitTimer === undefined) {
          this.waitTimer = setTimeout(
            () => {
              this.waitTimer = undefined;
              this.pump();
            },
            Math.max(0, this.settings.maxWaitMs - waited),
          );
        }
        return;
      }
      this.dispatch(this.take());
    }
  }

  /** Up to maxBatchSize entries, one per customer per round. */
  private take(): Entry<I, O>[] {
    const batch: Entry<I, O>[] = [];
    while (batch.length < this.settings.maxBatchSize && this.queued > 0 && this.ring.length > 0) {
      if (this.cursor >= this.ring.length) this.cursor = 0;
      const customer = this.ring[this.cursor] as string;
      const q = this.queues.get(customer) as Entry<I, O>[];
      const entry = q.shift() as Entry<I, O>;
      this.queued -= 1;
      if (q.length === 0) this.dropCustomer(customer);
      else this.cursor = (this.cursor + 1) % this.ring.length;
      batch.push(entry);
    }
    this.hooks.onDepth?.(this.queued);
    return batch;
  }

  private dispatch(batch: Entry<I, O>[]): void {
    if (this.waitTimer !== undefined) {
      clearTimeout(this.waitTimer);
      this.waitTimer = undefined;
    }
    this.running += 1;
    const started = performance.now();
    for (const e of batch) this.hooks.onQueueWait?.(started - e.enqueuedAt);
    const done = (async () => {
      let results: (O | Error)[] | undefined;
      let failure: unknown;
      try {
        results = await this.run(batch.map((e) => e.item));
        if (results.length !== batch.length) {
          throw errors.invalidModelOutput(`Backend returned ${results.length} results for a batch of ${batch.length}.`);
        }
      } catch (e) {
        failure = e instanceof AppError ? e : errors.modelUnavailable(this.modelId, "the backend failed", e);
      }
      const modelMs = performance.now() - started;
      this.avgBatchMs = this.avgBatchMs === 0 ? modelMs : 0.8 * this.avgBatchMs + 0.2 * modelMs;
      this.hooks.onBatch?.(batch.length, modelMs);
      batch.forEach((e, i) => {
        if (e.settled) return;
        e.settled = true;
        clearTimeout(e.timer);
        const r = failure === undefined ? results?.[i] : undefined;
        if (failure !== undefined) e.reject(failure);
        else if (r instanceof Error) e.reject(r);
        else e.resolve({ output: r as O, queueMs: started - e.enqueuedAt, modelMs, batchSize: batch.length });
      });
    })().finally(() => {
      this.running -= 1;
      this.inflight.delete(done);
      this.pump();
    });
    this.inflight.add(done);
  }

  /** Rejects waiting requests (503) and waits for running batches. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.waitTimer !== undefined) clearTimeout(this.waitTimer);
    for (const q of this.queues.values()) {
      for (const e of q) {
        if (e.settled) continue;
        e.settled = true;
        clearTimeout(e.timer);
        e.reject(errors.modelUnavailable(this.modelId, "the server is shutting down"));
      }
    }
    this.queues.clear();
    this.ring = [];
    this.queued = 0;
    this.hooks.onDepth?.(0);
    await Promise.allSettled([...this.inflight]);
  }
}
