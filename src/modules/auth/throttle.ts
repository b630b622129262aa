import type { RedisHandle } from "../../platform/redis.ts";
import {
  createWindowHits,
  integerReply,
  LuaScript,
  readyClient,
  throttleId,
  type WindowHits,
} from "../../platform/shared-throttle.ts";

/**
 * Login throttle with growing delays, per account and per client IP.
 *
 * Each key may fail `free` times; after that every further failure blocks the key for
 * `baseDelayMs * 2^(extra failures - 1)`, capped at `maxDelayMs`. A success clears the account
 * key. Failures are forgotten `forgetAfterMs` after the last one. A blocked key answers 429 with
 * Retry-After before any password is checked, whether or not the account exists.
 *
 * The cap keeps an attacker from locking the real owner out for long: with the defaults an
 * account is never blocked more than 5 minutes at a time, and the owner can always reset the
 * password by email (resets are not blocked by login failures).
 *
 * An attempt is charged as a failure when it is let through (`begin`), before the password is
 * checked, and handed back when it succeeds (`clear` for the account key, `refund` for the IP
 * key). So parallel attempts, on one instance or many, can never have more attempts in flight
 * than the budget allows: each one sees the charges of those before it. With Redis the state
 * is shared by every instance (`RedisFailureThrottle`); without, it is this instance's.
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

/** What the auth service needs of a login throttle; in process or shared through Redis. */
export interface AttemptThrottle {
  /**
   * 0 when `key` may try now, and the attempt is then charged as a failure; else the
   * milliseconds to wait, and nothing is charged.
   */
  begin(key: string): Promise<number>;
  /** The attempt succeeded: forget every failure of `key` (account keys). */
  clear(key: string): Promise<void>;
  /** The attempt succeeded: hand its charge back but keep the other failures (IP keys). */
  refund(key: string): Promise<void>;
}

interface Entry {
  failures: number;
  lastFailureAt: number;
  blockedUntil: number;
}

export class FailureThrottle implements AttemptThrottle {
  private readonly policy: ThrottlePolicy;
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(policy: ThrottlePolicy, maxEntries = 100_000, now: () => number = Date.now) {
    this.policy = policy;
    this.maxEntries = maxEntries;
    this.now = now;
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

  beginSync(key: string, now = Date.now()): number {
    const wait = this.retryAfterMs(key, now);
    if (wait === 0) this.failure(key, now);
    return wait;
  }

  /** Takes one failure back; a block the count no longer earns is lifted. */
  refundSync(key: string, now = Date.now()): void {
    const e = this.live(key, now);
    if (e === undefined) return;
    e.failures -= 1;
    if (e.failures <= 0) this.entries.delete(key);
    else if (e.failures <= this.policy.free) e.blockedUntil = 0;
  }

  async begin(key: string): Promise<number> {
    return this.beginSync(key, this.now());
  }

  async clear(key: string): Promise<void> {
    this.success(key);
  }

  async refund(key: string): Promise<void> {
    this.refundSync(key, this.now());
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

/**
 * Charges one attempt unless the key is blocked (the in-process `beginSync`, atomically).
 * KEYS: 1 the key's hash {f: failures, b: blocked until (ms)}.
 * ARGV: 1 now (ms), 2 free, 3 base delay, 4 max delay, 5 forget after (ms).
 * Returns 0 (charged) or the ms to wait. The key expires when it would be forgotten: `forget`
 * after the last charge, or when its block ends if that is later.
 */
export const BEGIN_SCRIPT = new LuaScript(`
local now = tonumber(ARGV[1])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if blocked > now then return blocked - now end
local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
local extra = f - tonumber(ARGV[2])
if extra > 0 then
  local delay = tonumber(ARGV[3]) * 2 ^ math.min(extra - 1, 30)
  if delay > tonumber(ARGV[4]) then delay = tonumber(ARGV[4]) end
  blocked = now + delay
  redis.call('HSET', KEYS[1], 'b', string.format('%.0f', blocked))
end
local ttl = tonumber(ARGV[5])
if blocked - now > ttl then ttl = blocked - now end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl))
return 0
`);

/**
 * Takes one charge back (the in-process `refundSync`). KEYS: 1 the key's hash. ARGV: 1 free.
 * Never creates the key. Returns the failures left.
 */
export const REFUND_SCRIPT = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local f = redis.call('HINCRBY', KEYS[1], 'f', -1)
if f <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
if f <= tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], 'b') end
return f
`);

/**
 * The login throttle shared by every instance: one Redis hash per key,
 * `{prefix}throttle:{name}:{<HMAC of the key>}` (no email or IP in clear; one hash tag, one
 * slot), expiring when its failures would be forgotten. Every call also updates this
 * instance's `FailureThrottle`, which decides alone when Redis is absent, down or failing
 * (shared-throttle.ts says why that is neither fail-open nor fail-closed).
 */
export class RedisFailureThrottle implements AttemptThrottle {
  private readonly redis: RedisHandle;
  private readonly name: string;
  private readonly policy: ThrottlePolicy;
  private readonly secret: string;
  private readonly now: () => number;
  readonly local: FailureThrottle;

  constructor(redis: RedisHandle, opts: { name: string; policy: ThrottlePolicy; secret: string; now?: () => number }) {
    this.redis = redis;
    this.name = opts.name;
    this.policy = opts.policy;
    this.secret = opts.secret;
    this.now = opts.now ?? Date.now;
    this.local = new FailureThrottle(opts.policy, undefined, this.now);
  }

  key(key: string): string {
    return `${this.redis.keyPrefix}throttle:${this.name}:{${throttleId(this.secret, key)}}`;
  }

  async begin(key: string): Promise<number> {
    const now = this.now();
    const c = readyClient(this.redis);
    if (c !== null) {
      try {
        const p = this.policy;
        const wait = integerReply(
          await BEGIN_SCRIPT.run(c, [this.key(key)], [now, p.free, p.baseDelayMs, p.maxDelayMs, p.forgetAfterMs]),
        );
        if (wait === 0) this.local.failure(key, now);
        return wait;
      } catch {
        // decided in process below
      }
    }
    return this.local.beginSync(key, now);
  }

  async clear(key: string): Promise<void> {
    this.local.success(key);
    const c = readyClient(this.redis);
    if (c === null) return;
    try {
      await c.del(this.key(key));
    } catch {
      // the key expires on its own
    }
  }

  async refund(key: string): Promise<void> {
    this.local.refundSync(key, this.now());
    const c = readyClient(this.redis);
    if (c === null) return;
    try {
      await REFUND_SCRIPT.run(c, [this.key(key)], [this.policy.free]);
    } catch {
      // the charge stays: stricter, never looser
    }
  }
}

/** The Redis throttle when Redis is configured, else the in-process one. */
export function createFailureThrottle(
  redis: RedisHandle | undefined,
  opts: { name: string; policy: ThrottlePolicy; secret: string; now?: () => number },
): AttemptThrottle {
  return redis?.client != null
    ? new RedisFailureThrottle(redis, opts)
    : new FailureThrottle(opts.policy, undefined, opts.now);
}

/** Every throttle of the auth service. */
export interface AuthThrottles {
  /** Failed passwords per account (`acct:<email>` at sign-in, `pwd:<user id>` when signed in). */
  readonly account: AttemptThrottle;
  /** Failed sign-ins per client IP. */
  readonly ip: AttemptThrottle;
  /** Registrations per client IP, per hour. */
  readonly registrations: WindowHits;
  /** Reset / verification emails per address, per hour. */
  readonly emailsPerAddress: WindowHits;
  /** Reset / verification requests per client IP, per 15 minutes. */
  readonly emailRequestsPerIp: WindowHits;
}

/**
 * The auth throttles, shared through Redis when `redis` has a client, else in process. Redis
 * keys (under REDIS_KEY_PREFIX): `throttle:login:{id}`, `throttle:login-ip:{id}`,
 * `throttle:register-ip:{id}`, `throttle:email-address:{id}`, `throttle:email-ip:{id}`.
 */
export function createAuthThrottles(
  redis: RedisHandle | undefined,
  opts: { secret: string; accountPolicy?: ThrottlePolicy; ipPolicy?: ThrottlePolicy; now?: () => number },
): AuthThrottles {
  const { secret } = opts;
  const now = opts.now ?? Date.now;
  return {
    account: createFailureThrottle(redis, {
      name: "login",
      policy: opts.accountPolicy ?? ACCOUNT_POLICY,
      secret,
      now,
    }),
    ip: createFailureThrottle(redis, { name: "login-ip", policy: opts.ipPolicy ?? IP_POLICY, secret, now }),
    registrations: createWindowHits(redis, { name: "register-ip", windowMs: 60 * 60_000, secret }),
    emailsPerAddress: createWindowHits(redis, { name: "email-address", windowMs: 60 * 60_000, secret }),
    emailRequestsPerIp: createWindowHits(redis, { name: "email-ip", windowMs: 15 * 60_000, secret }),
  };
}
