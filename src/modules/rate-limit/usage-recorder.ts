import type { UsageRepo } from "./usage.repo.ts";

/**
 * Durable monthly usage, aggregated in memory and written in batches (never per request).
 * A failed flush keeps its counts for the next attempt; shutdown flushes what is left.
 */
export class UsageRecorder {
  private pending = new Map<string, { customerId: string; month: string; requests: number; streamMs: number }>();
  private readonly repo: UsageRepo;
  private flushing: Promise<void> | undefined;

  constructor(repo: UsageRepo) {
    this.repo = repo;
  }

  record(customerId: string, month: string, requests = 1, streamMs = 0): void {
    const key = `${customerId}|${month}`;
    const cur = this.pending.get(key);
    // Counted in place: no allocation per request once the customer's month has an entry.
    if (cur !== undefined) {
      cur.requests += requests;
      cur.streamMs += streamMs;
    } else this.pending.set(key, { customerId, month, requests, streamMs });
  }

  /** Stream session time (ms) charged to the customer's month. */
  recordStream(customerId: string, month: string, ms: number): void {
    this.record(customerId, month, 0, ms);
  }

  /** Database count plus what this instance has not written yet. */
  async durableCount(customerId: string, month: string): Promise<number> {
    const stored = await this.repo.monthCount(customerId, month);
    return stored + (this.pending.get(`${customerId}|${month}`)?.requests ?? 0);
  }

  /** Durable stream time (ms) of the month plus what this instance has not written yet. */
  async durableStreamMs(customerId: string, month: string): Promise<number> {
    const stored = await this.repo.monthStreamMs(customerId, month);
    return stored + (this.pending.get(`${customerId}|${month}`)?.streamMs ?? 0);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.repo.addMonthly([...batch.values()]);
    } catch (e) {
      for (const b of batch.values()) this.record(b.customerId, b.month, b.requests, b.streamMs);
      throw e;
    }
  }
}
