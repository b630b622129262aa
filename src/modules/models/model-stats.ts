/**
 * Live per-model statistics for GET /v1/models: counters plus latency percentiles over the
 * most recent `capacity` requests (a bounded ring buffer; sorted on read, which is cheap at
 * this size and only happens when someone asks).
 */
export type ModelStatus = "loading" | "ready" | "degraded" | "down";

export interface ModelStatsSnapshot {
  readonly requests: number;
  readonly errors: number;
  readonly latency_ms: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  readonly queue_depth: number;
  readonly mean_batch_size: number | null;
}

export class LatencyWindow {
  private readonly values: Float64Array;
  private count = 0;
  private next = 0;

  constructor(capacity = 2048) {
    this.values = new Float64Array(capacity);
  }

  record(ms: number): void {
    this.values[this.next] = ms;
    this.next = (this.next + 1) % this.values.length;
    this.count = Math.min(this.count + 1, this.values.length);
  }

  /** Nearest-rank percentile (q in 0..1) over the window, or null when empty. */
  percentile(q: number): number | null {
    if (this.count === 0) return null;
    const sorted = this.values.slice(0, this.count).sort();
    const rank = Math.min(this.count - 1, Math.max(0, Math.ceil(q * this.count) - 1));
    return sorted[rank] as number;
  }
}

export class ModelStats {
  requests = 0;
  errors = 0;
  batches = 0;
  batchedItems = 0;
  readonly latency = new LatencyWindow();

  /** `ok` requests feed the latency window; `error` counts server-side failures (5xx). */
  recordRequest(ok: boolean, totalMs: number, error = !ok): void {
    this.requests += 1;
    if (error) this.errors += 1;
    if (ok) this.latency.record(totalMs);
  }

  recordBatch(size: number): void {
    this.batches += 1;
    this.batchedItems += size;
  }

  snapshot(queueDepth: number): ModelStatsSnapshot {
    const r = (v: number | null) => (v === null ? null : Math.round(v * 100) / 100);
    return {
      requests: this.requests,
      errors: this.errors,
      latency_ms: {
        p50: r(this.latency.percentile(0.5)),
        p95: r(this.latency.percentile(0.95)),
        p99: r(this.latency.percentile(0.99)),
      },
      queue_depth: queueDepth,
      mean_batch_size: this.batches === 0 ? null : Math.round((this.batchedItems / this.batches) * 100) / 100,
    };
  }
}
