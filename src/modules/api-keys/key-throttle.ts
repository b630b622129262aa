import { WindowCounter } from "../../platform/http/window-counter.ts";
import { hashKey } from "./key-format.ts";

export type ThrottleDecision =
  /** Under the limit: look the key up and answer as usual. */
  | { readonly throttled: false }
  /** Over the limit, but this key may still be looked up: a valid one is served, any failure is a 429. */
  | { readonly throttled: true; readonly lookup: true }
  /** Over the limit and out of lookups: 429 without looking the key up. */
  | { readonly throttled: true; readonly lookup: false };

/**
 * The invalid-API-key throttle of one instance, per client IP. Failed attempts are counted in
 * a fixed one-minute window; once an IP has `limit` of them it is throttled until the window
 * ends. Throttling answers failing attempts with 429 (hiding why they failed) but does not
 * lock out the valid keys of other clients behind the same address (a shared NAT): while
 * throttled, up to `limit` distinct keys per IP and window are still looked up (through the
 * key cache, as usual), and a valid one is served. Repeating a key already looked up costs no
 * new lookup slot, so one robot retrying a wrong key does not use them up; a guesser, who
 * needs a new key every time, gets at most `limit` more answers per window and then 429
 * without a lookup, whatever the key. So the throttle stays a throttle on guessing, not an
 * oracle at full speed.
 */
export class KeyFailureThrottle {
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly failures: WindowCounter;
  /** Hashes of the keys looked up while the IP is throttled, per IP; at most `limit` each. */
  private readonly admitted = new Map<string, { resetAt: number; hashes: Set<string> }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(limit: number, opts: { windowMs?: number; now?: () => number } = {}) {
    this.limit = limit;
    this.windowMs = opts.windowMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.failures = new WindowCounter(this.windowMs);
    this.sweeper = setInterval(() => this.sweep(), this.windowMs);
    this.sweeper.unref();
  }

  /** Decides what to do with a key presented from `ip`. Costs one map lookup when not throttled. */
  check(ip: string, key: string): ThrottleDecision {
    const now = this.now();
    if (this.failures.peek(ip, now) < this.limit) return { throttled: false };
    let entry = this.admitted.get(ip);
    if (entry === undefined || entry.resetAt <= now) {
      entry = { resetAt: now + this.windowMs, hashes: new Set() };
      this.admitted.set(ip, entry);
    }
    const hash = hashKey(key);
    if (entry.hashes.has(hash)) return { throttled: true, lookup: true };
    if (entry.hashes.size >= this.limit) return { throttled: true, lookup: false };
    entry.hashes.add(hash);
    return { throttled: true, lookup: true };
  }

  /** Counts a failed (or refused) attempt; returns the seconds until the IP's window ends. */
  fail(ip: string): number {
    return this.failures.hit(ip, this.now()).resetInMs / 1000;
  }

  private sweep(): void {
    const now = this.now();
    for (const [ip, e] of this.admitted) if (e.resetAt <= now) this.admitted.delete(ip);
  }

  close(): void {
    clearInterval(this.sweeper);
    this.failures.close();
    this.admitted.clear();
  }
}
