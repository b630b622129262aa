/**
 * Fixed-window counters per key, in process. Used for cheap abuse throttles (404 scans) where
 * exactness across instances does not matter, and as the in-process side (no Redis, or Redis
 * failing) of the shared security throttles (shared-throttle.ts). Memory is bounded: expired
 * windows are swept every window length.
 */
export class WindowCounter {
  private readonly windowMs: number;
  private readonly counts = new Map<string, { count: number; resetAt: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(windowMs: number) {
    this.windowMs = windowMs;
    this.sweeper = setInterval(() => this.sweep(), windowMs);
    this.sweeper.unref();
  }

  hit(key: string, now = Date.now()): { count: number; resetInMs: number } {
    let entry = this.counts.get(key);
    if (entry === undefined || entry.resetAt <= now) {
      entry = { count: 0, resetAt: now + this.windowMs };
      this.counts.set(key, entry);
    }
    entry.count += 1;
    return { count: entry.count, resetInMs: entry.resetAt - now };
  }

  peek(key: string, now = Date.now()): number {
    const entry = this.counts.get(key);
    return entry === undefined || entry.resetAt <= now ? 0 : entry.count;
  }

  reset(key: string): void {
    this.counts.delete(key);
  }

  private sweep(now = Date.now()): void {
    for (const [k, v] of this.counts) if (v.resetAt <= now) this.counts.delete(k);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.counts.clear();
  }
}
