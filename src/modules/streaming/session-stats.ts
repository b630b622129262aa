/** Why a frame got no action. */
export type DropReason = "superseded" | "rate_ceiling" | "overloaded";
export const DROP_REASONS: readonly DropReason[] = ["superseded", "rate_ceiling", "overloaded"];

export interface StatsSnapshot {
  readonly frames_received: number;
  readonly frames_inferred: number;
  readonly frames_dropped: Readonly<Record<DropReason, number>>;
  readonly frames_failed: number;
  readonly target_fps: number;
  /** Actions sent per second over the last `FPS_WINDOW_MS`. */
  readonly achieved_fps: number;
  /** Frame-to-action latency over the last `LATENCY_SAMPLES` actions; null before the first. */
  readonly latency_ms: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  readonly uptime_s: number;
}

export const FPS_WINDOW_MS = 5_000;
export const LATENCY_SAMPLES = 1_000;

const round = (v: number) => Math.round(v * 100) / 100;

/** Nearest-rank percentile of a sorted array. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** One session's counters; `now` is a monotonic clock in ms. */
export class SessionStats {
  received = 0;
  inferred = 0;
  failed = 0;
  readonly dropped: Record<DropReason, number> = { superseded: 0, rate_ceiling: 0, overloaded: 0 };
  private readonly latencies: number[] = [];
  private latencyNext = 0;
  private readonly sentAt: number[] = [];
  private readonly startedAt: number;
  private readonly now: () => number;
  targetFps: number;

  constructor(now: () => number, targetFps: number) {
    this.now = now;
    this.startedAt = now();
    this.targetFps = targetFps;
  }

  recordAction(latencyMs: number): void {
    this.inferred++;
    if (this.latencies.length < LATENCY_SAMPLES) this.latencies.push(latencyMs);
    else {
      this.latencies[this.latencyNext] = latencyMs;
      this.latencyNext = (this.latencyNext + 1) % LATENCY_SAMPLES;
    }
    const t = this.now();
    this.sentAt.push(t);
    this.trim(t);
  }

  recordDrop(reason: DropReason): void {
    this.dropped[reason]++;
  }

  private trim(t: number): void {
    while (this.sentAt.length > 0 && (this.sentAt[0] as number) <= t - FPS_WINDOW_MS) this.sentAt.shift();
  }

  snapshot(): StatsSnapshot {
    const t = this.now();
    this.trim(t);
    const window = Math.min(FPS_WINDOW_MS, Math.max(1, t - this.startedAt));
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const pct = (p: number) => {
      const v = percentile(sorted, p);
      return v === null ? null : round(v);
    };
    return {
      frames_received: this.received,
      frames_inferred: this.inferred,
      frames_dropped: { ...this.dropped },
      frames_failed: this.failed,
      target_fps: this.targetFps,
      achieved_fps: round((this.sentAt.length * 1000) / window),
      latency_ms: { p50: pct(50), p95: pct(95), p99: pct(99) },
      uptime_s: round((t - this.startedAt) / 1000),
    };
  }
}
