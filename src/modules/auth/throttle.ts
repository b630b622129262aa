/**
 * Login throttle with growing delays, per account and per client IP (in process).
 *
 * Each key may fail `free` times; after that every further failure blocks the key for
 * `baseDelayMs * 2^(extra failures - 1)`, capped at `maxDelayMs`. A success clears the account
 * key. Failures are forgotten `forgetAfterMs` after the last one. A blocked key answers 429 with
 * Retry-After before any password is checked, whether or not the account exists.
 *
 * The cap keeps an attacker from locking the real owner out for long: with the defaults an
 * account is never blocked more than 5 minutes at a time, and the owner can always reset the
 * password by email (resets are not blocked by login failures).
 */
export interface ThrottlePolicy {
  readonly free: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly forgetAfterMs: number;
}

export const ACCOUNT_POLICY: ThrottlePolicy = {
  free: 5,
  baseDelayMs: 1_000,
  maxDelayMs: 5 * 60_000,
  forgetAfterMs: 15 * 60_000,
};

export const IP_POLICY: ThrottlePolicy = {
  free: 20,
  baseDelayMs: 1_000,
  maxDelayMs: 15 * 60_000,
  forgetAfterMs: 60 * 60_000,
};

interface Entry {
  failures: number;
  lastFailureAt: number;
  blockedUntil: number;
}

export class FailureThrottle {
  private readonly policy: ThrottlePolicy;
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;

  constructor(policy: ThrottlePolicy, maxEntries = 100_000) {
    this.policy = policy;
    this.maxEntries = maxEntries;
  }

  /** Milliseconds until `key` may try again; 0 when it may try now. */
  retryAfterMs(key: string, now = Date.now()): number {
    const e = this.live(key, now);
    return e === undefined ? 0 : Math.max(0, e.blockedUntil - now);
  }

  failure(key: string, now = Date.now()): void {
    let e = this.live(key, now);
    if (e === undefined) {
      if (this.entries.size >= this.maxEntries) this.sweep(now);
      // Still full of live entries: forget the oldest rather than grow without bound.
      if (this.entries.size >= this.maxEntries) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      e = { failures: 0, lastFailureAt: now, blockedUntil: 0 };
      this.entries.set(key, e);
    }
    e.failures += 1;
    e.lastFailureAt = now;
    const extra = e.failures - this.policy.free;
    if (extra > 0) {
      const delay = Math.min(this.policy.baseDelayMs * 2 ** Math.min(extra - 1, 30), this.policy.maxDelayMs);
      e.blockedUntil = now + delay;
    }
  }

  success(key: string): void {
    this.entries.delete(key);
  }

  failures(key: string, now = Date.now()): number {
    return this.live(key, now)?.failures ?? 0;
  }

  private live(key: string, now: number): Entry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (now - e.lastFailureAt > this.policy.forgetAfterMs && e.blockedUntil <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  private sweep(now: number): void {
    for (const key of [...this.entries.keys()]) this.live(key, now);
  }
}
