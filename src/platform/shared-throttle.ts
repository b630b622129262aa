import { createHash, createHmac } from "node:crypto";
import { WindowCounter } from "./http/window-counter.ts";
import type { RedisClient, RedisHandle } from "./redis.ts";

/**
 * Building blocks of the security throttles that every instance shares through Redis (sign-in,
 * registration, email requests, invalid API keys), with the same in-process fallback as the
 * other Redis-backed state: no Redis configured, Redis not `ready`, or a command that fails or
 * times out (REDIS_COMMAND_TIMEOUT_MS) and the call is decided by this instance's own counters.
 * Those are kept up to date on every call, Redis or not, so an outage starts from this
 * instance's recent history rather than from zero. During an outage a throttle is therefore
 * per instance (an attacker's budget is at most N times the limit with N instances, as before
 * the throttles were shared): neither open (unlimited attempts) nor closed (every user refused).
 */

/**
 * The pseudonym of an email address, IP or key in a Redis key: HMAC-SHA256 under SECRET_KEY,
 * 128 bits in base64url. A plain hash of an IPv4 address or a known email would be reversed by
 * trying them all; without SECRET_KEY this cannot be. Every instance shares SECRET_KEY (the
 * access tokens need it too), so they all name the same subject the same way.
 */
export function throttleId(secret: string, subject: string): string {
  return createHmac("sha256", secret).update(`throttle\u0000${subject}`).digest("base64url").slice(0, 22);
}

/** The client when Redis is configured and connected, else null (fall back at once, no waiting). */
export function readyClient(redis: RedisHandle): RedisClient | null {
  const c = redis.client;
  return c !== null && c.status === "ready" ? c : null;
}

/** A Lua script run by EVALSHA, or EVAL once when Redis lost its script cache (restart, SCRIPT FLUSH). */
export class LuaScript {
  readonly source: string;
  private readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(client: RedisClient, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("NOSCRIPT")) {
        return await client.eval(this.source, keys.length, ...keys, ...args);
      }
      throw e;
    }
  }
}

/**
 * One fixed-window hit: INCR, and the window's expiry set by the hit that opened it (or repaired
 * if the key somehow has none). Returns {count, ms until the window ends}.
 * KEYS: 1 the counter. ARGV: 1 window (ms).
 */
export const HIT_SCRIPT = new LuaScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {n, ttl}
`);

/** A script's integer reply, or a throw (the caller falls back) when Redis answered something else. */
export function integerReply(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v)) throw new Error(`unexpected script reply ${String(v)}`);
  return v;
}

/** HIT_SCRIPT's reply, checked. */
export function hitReply(v: unknown): Hit {
  if (!Array.isArray(v) || v.length !== 2) throw new Error("unexpected hit script reply");
  return { count: integerReply(v[0]), resetInMs: integerReply(v[1]) };
}

export interface Hit {
  readonly count: number;
  readonly resetInMs: number;
}

/** Fixed-window counters per subject (registrations per IP, emails per address...). */
export interface WindowHits {
  /** Counts one hit on `subject`; returns the window's count so far, this hit included. */
  hit(subject: string): Promise<Hit>;
  close(): void;
}

export class MemoryWindowHits implements WindowHits {
  private readonly counter: WindowCounter;

  constructor(windowMs: number) {
    this.counter = new WindowCounter(windowMs);
  }

  hitSync(subject: string): Hit {
    return this.counter.hit(subject);
  }

  async hit(subject: string): Promise<Hit> {
    return this.counter.hit(subject);
  }

  close(): void {
    this.counter.close();
  }
}

/**
 * Shared counters: `{prefix}throttle:{name}:{<id>}` (one hash tag: one cluster slot), a Redis
 * integer that expires with its window. Falls back to the in-process counter (see the top of
 * this file).
 */
export class RedisWindowHits implements WindowHits {
  private readonly redis: RedisHandle;
  private readonly name: string;
  private readonly windowMs: number;
  private readonly secret: string;
  private readonly local: MemoryWindowHits;

  constructor(redis: RedisHandle, opts: { name: string; windowMs: number; secret: string }) {
    this.redis = redis;
    this.name = opts.name;
    this.windowMs = opts.windowMs;
    this.secret = opts.secret;
    this.local = new MemoryWindowHits(opts.windowMs);
  }

  key(subject: string): string {
    return `${this.redis.keyPrefix}throttle:${this.name}:{${throttleId(this.secret, subject)}}`;
  }

  async hit(subject: string): Promise<Hit> {
    const local = this.local.hitSync(subject);
    const c = readyClient(this.redis);
    if (c === null) return local;
    try {
      return hitReply(await HIT_SCRIPT.run(c, [this.key(subject)], [this.windowMs]));
    } catch {
      return local;
    }
  }

  close(): void {
    this.local.close();
  }
}

/** The Redis counters when Redis is configured, else the in-process ones. */
export function createWindowHits(
  redis: RedisHandle | undefined,
  opts: { name: string; windowMs: number; secret: string },
): WindowHits {
  return redis?.client != null ? new RedisWindowHits(redis, opts) : new MemoryWindowHits(opts.windowMs);
}
