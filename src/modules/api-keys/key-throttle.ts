import { WindowCounter } from "../../platform/http/window-counter.ts";
import type { RedisHandle } from "../../platform/redis.ts";
import {
  HIT_SCRIPT,
  hitReply,
  integerReply,
  LuaScript,
  readyClient,
  throttleId,
} from "../../platform/shared-throttle.ts";
import { hashKey } from "./key-format.ts";

export type ThrottleDecision =
  /** Under the limit: look the key up and answer as usual. */
  | { readonly throttled: false }
  /** Over the limit, but this key may still be looked up: a valid one is served, any failure is a 429. */
  | { readonly throttled: true; readonly lookup: true }
  /** Over the limit and out of lookups: 429 without looking the key up. */
  | { readonly throttled: true; readonly lookup: false };

/** The invalid-key throttle as the strategy uses it: in process (sync) or shared through Redis. */
export interface KeyThrottle {
  /** Decides what to do with a key presented from `ip`. */
  check(ip: string, key: string): ThrottleDecision | Promise<ThrottleDecision>;
  /** Counts a failed (or refused) attempt; returns the seconds until the IP's window ends. */
  fail(ip: string): number | Promise<number>;
  close(): void;
}

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
export class KeyFailureThrottle implements KeyThrottle {
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

/**
 * KeyFailureThrottle.check, atomically. KEYS: 1 the IP's failure counter, 2 the set of key ids
 * looked up while throttled (one hash tag: one slot). ARGV: 1 limit, 2 key id, 3 window (ms).
 * Returns 0 not throttled, 1 throttled but look up, 2 throttled without lookup.
 */
export const CHECK_SCRIPT = new LuaScript(`
local limit = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < limit then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 1 end
if redis.call('SCARD', KEYS[2]) >= limit then return 2 end
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
`);

const DECISIONS: readonly ThrottleDecision[] = [
  { throttled: false },
  { throttled: true, lookup: true },
  { throttled: true, lookup: false },
];

/**
 * The invalid-key throttle shared by every instance, with the same rules as KeyFailureThrottle:
 * `{prefix}throttle:api-key-ip:{<id>}:n` (failures in the window, a Redis integer) and `...:keys`
 * (ids of the keys looked up while throttled, a set), `<id>` an HMAC of the IP (of the key hash
 * for set members), both expiring with their window. Costs one EVALSHA per API-key
 * verification the strategy does not answer from its warm valid keys (a GET while the IP is not
 * throttled). Every call also updates the in-process
 * KeyFailureThrottle, which decides alone when Redis is absent, down or failing
 * (shared-throttle.ts says why that is neither fail-open nor fail-closed).
 */
export class RedisKeyFailureThrottle implements KeyThrottle {
  private readonly redis: RedisHandle;
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly secret: string;
  readonly local: KeyFailureThrottle;

  constructor(redis: RedisHandle, limit: number, opts: { secret: string; windowMs?: number; now?: () => number }) {
    this.redis = redis;
    this.limit = limit;
    this.windowMs = opts.windowMs ?? 60_000;
    this.secret = opts.secret;
    this.local = new KeyFailureThrottle(limit, {
      windowMs: this.windowMs,
      ...(opts.now === undefined ? {} : { now: opts.now }),
    });
  }

  keys(ip: string): [string, string] {
    const base = `${this.redis.keyPrefix}throttle:api-key-ip:{${throttleId(this.secret, ip)}}`;
    return [`${base}:n`, `${base}:keys`];
  }

  async check(ip: string, key: string): Promise<ThrottleDecision> {
    const c = readyClient(this.redis);
    if (c !== null) {
      try {
        const id = throttleId(this.secret, hashKey(key));
        const reply = integerReply(await CHECK_SCRIPT.run(c, this.keys(ip), [this.limit, id, this.windowMs]));
        const decision = DECISIONS[reply];
        if (decision !== undefined) return decision;
      } catch {
        // decided in process below
      }
    }
    return this.local.check(ip, key);
  }

  async fail(ip: string): Promise<number> {
    const local = this.local.fail(ip);
    const c = readyClient(this.redis);
    if (c === null) return local;
    try {
      return hitReply(await HIT_SCRIPT.run(c, [this.keys(ip)[0]], [this.windowMs])).resetInMs / 1000;
    } catch {
      return local;
    }
  }

  close(): void {
    this.local.close();
  }
}

/** The Redis throttle when Redis is configured, else the in-process one. */
export function createKeyThrottle(redis: RedisHandle | undefined, limit: number, secret: string): KeyThrottle {
  return redis?.client != null ? new RedisKeyFailureThrottle(redis, limit, { secret }) : new KeyFailureThrottle(limit);
}
