import type { Tier } from "../../platform/auth.ts";
import { type AppError, errors } from "../../platform/errors.ts";
import type { RedisClient } from "../../platform/redis.ts";
import { SwrCache } from "../../platform/swr-cache.ts";
import { type CalendarWindows, calendar } from "./calendar.ts";
import { effectiveStreamAllowance, type StreamAllowance, type StreamOverrides } from "./policy.ts";
import type { UsageRecorder } from "./usage-recorder.ts";

/** A customer's stream time after a charge (or a peek), in ms. */
export interface StreamTimeResult {
  readonly tier: Tier;
  readonly allowance: StreamAllowance;
  readonly dayMs: number;
  readonly monthMs: number;
  readonly now: number;
  readonly cal: CalendarWindows;
  readonly source: "redis" | "memory" | "fallback";
}

export type StreamWindow = "stream_day" | "stream_month";
export const STREAM_WINDOWS: readonly StreamWindow[] = ["stream_day", "stream_month"];

export function streamLimitMs(r: StreamTimeResult, w: StreamWindow): number | null {
  const s = w === "stream_day" ? r.allowance.secondsPerDay : r.allowance.secondsPerMonth;
  return s === null ? null : s * 1_000;
}

export function streamUsedMs(r: StreamTimeResult, w: StreamWindow): number {
  return w === "stream_day" ? r.dayMs : r.monthMs;
}

/** ms left in the window; null when unlimited. */
export function streamRemainingMs(r: StreamTimeResult, w: StreamWindow): number | null {
  const limit = streamLimitMs(r, w);
  return limit === null ? null : Math.max(0, limit - streamUsedMs(r, w));
}

/** ms left before any window runs out; null when both are unlimited. */
export function streamLeftMs(r: StreamTimeResult): number | null {
  let left: number | null = null;
  for (const w of STREAM_WINDOWS) {
    const rem = streamRemainingMs(r, w);
    if (rem !== null) left = left === null ? rem : Math.min(left, rem);
  }
  return left;
}

/** The windows with nothing left. */
export function streamExhausted(r: StreamTimeResult): StreamWindow[] {
  return STREAM_WINDOWS.filter((w) => streamRemainingMs(r, w) === 0);
}

/** ms until every exhausted window has time again (its calendar reset). */
export function streamRetryAfterMs(r: StreamTimeResult): number {
  let ms = 0;
  for (const w of streamExhausted(r)) {
    ms = Math.max(ms, (w === "stream_day" ? r.cal.nextDayAt : r.cal.nextMonthAt) - r.now);
  }
  return ms;
}

const WINDOW_S: Readonly<Record<StreamWindow, number>> = { stream_day: 86_400, stream_month: 2_592_000 };

/**
 * The RateLimit-Policy and RateLimit fields for stream time, in seconds (docs/rate-limits.md):
 *   RateLimit-Policy: "stream_day";q=1800;w=86400, "stream_month";q=18000;w=2592000
 *   RateLimit: "stream_day";r=1740;t=43200, "stream_month";r=17940;t=2246400
 * Unlimited windows are left out; both are "" when every window is unlimited.
 */
export function streamHeaders(r: StreamTimeResult): {
  "RateLimit-Policy": string;
  RateLimit: string;
  "Billing-Overage"?: string;
} {
  const policy: string[] = [];
  const state: string[] = [];
  for (const w of STREAM_WINDOWS) {
    const limit = streamLimitMs(r, w);
    const remaining = streamRemainingMs(r, w);
    if (limit === null || remaining === null) continue;
    const reset = Math.ceil(((w === "stream_day" ? r.cal.nextDayAt : r.cal.nextMonthAt) - r.now) / 1000);
    policy.push(`"${w}";q=${Math.floor(limit / 1000)};w=${WINDOW_S[w]}`);
    state.push(`"${w}";r=${Math.floor(remaining / 1000)};t=${reset}`);
  }
  const h = { "RateLimit-Policy": policy.join(", "), RateLimit: state.join(", ") };
  const overage = streamOverageHeader(r);
  return overage === undefined ? h : { ...h, "Billing-Overage": overage };
}

/**
 * `Billing-Overage: stream_seconds=<over>;cap=<cap>` once the month's stream time is past the
 * included allowance while stream overage is on (docs/billing.md, "Overage"); else undefined.
 */
export function streamOverageHeader(r: StreamTimeResult): string | undefined {
  const o = r.allowance.overage;
  if (o === undefined) return undefined;
  const over = Math.floor(r.monthMs / 1000) - o.included;
  return over > 0 ? `stream_seconds=${Math.min(over, o.cap)};cap=${o.cap}` : undefined;
}

/** 429 quota_exceeded naming the exhausted stream windows, with Retry-After and the headers. */
export function streamTimeError(r: StreamTimeResult): AppError {
  const h = streamHeaders(r);
  return errors.quotaExceeded(streamRetryAfterMs(r) / 1000, streamExhausted(r), h["RateLimit-Policy"] === "" ? {} : h);
}

/**
 * Adds `ms` to the day and month counters (creating the month from `seed`), answering the
 * totals after; 0 only reads. Returns -1 when the month counter is missing and no seed was
 * given: the caller reads the durable count and calls again.
 * KEYS: day, month. ARGV: ms, day TTL (ms), month TTL (ms), seed or "".
 */
const CHARGE_LUA = `
local m = redis.call('GET', KEYS[2])
if not m then
  if ARGV[4] == '' then return -1 end
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
end
local add = tonumber(ARGV[1])
if add > 0 then
  local d = redis.call('INCRBY', KEYS[1], add)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local mo = redis.call('INCRBY', KEYS[2], add)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {d, mo}
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]))}`;

interface MemoryEntry {
  dayKey: string;
  dayMs: number;
  monthKey: string;
  monthMs: number;
}

export interface StreamTimeMeterOptions {
  readonly redis: RedisClient | null;
  readonly keyPrefix: string;
  readonly usage: UsageRecorder;
  readonly now: () => number;
  readonly redisTimeoutMs: number;
  readonly redisRetryMs: number;
  readonly cacheFreshMs: number;
  readonly cacheStaleMs: number;
  readonly load: (customerId: string) => Promise<{ tier: Tier } & StreamOverrides>;
  /** Metrics hooks: each charge (ms, which counter took it) and each Redis failure. */
  readonly events?: {
    charged(ms: number, source: StreamTimeResult["source"]): void;
    redisFailure(reason: "timeout" | "error"): void;
  };
}

class Timeout extends Error {}

/**
 * Stream session time per customer, per UTC day and month (docs/rate-limits.md, "Stream time").
 * Sessions charge the wall time elapsed since their last charge (every heartbeat and at close);
 * each charge is one atomic INCRBY pair in Redis, shared by every instance, or the in-process
 * counters without Redis and while Redis fails (then counted per instance). Charges are also
 * summed into the durable month (`usage_counters.stream_ms`), which seeds a cold month counter.
 * Admission is checked with a peek: time left > 0 in every window.
 */
export class StreamTimeMeter {
  private readonly opts: StreamTimeMeterOptions;
  private readonly allowances: SwrCache<{ tier: Tier; allowance: StreamAllowance }>;
  private readonly local = new Map<string, MemoryEntry>();
  private degradedUntil = 0;

  constructor(opts: StreamTimeMeterOptions) {
    this.opts = opts;
    this.allowances = new SwrCache({
      freshMs: opts.cacheFreshMs,
      staleMs: opts.cacheStaleMs,
      maxEntries: 100_000,
      now: opts.now,
      load: async (id) => {
        const row = await opts.load(id);
        return { tier: row.tier, allowance: effectiveStreamAllowance(row.tier, row) };
      },
    });
  }

  /** The customer's allowances (tier defaults with its overrides). */
  async allowance(customerId: string): Promise<{ tier: Tier; allowance: StreamAllowance }> {
    return this.allowances.get(customerId);
  }

  /** Call after a customer's tier or overrides changed. */
  invalidate(customerId: string): void {
    this.allowances.delete(customerId);
  }

  clearCache(): void {
    this.allowances.clear();
  }

  /** Current stream time without charging. */
  peek(customerId: string): Promise<StreamTimeResult> {
    return this.charge(customerId, 0);
  }

  /** Adds `ms` of session time to the customer's day and month; answers the totals after it. */
  async charge(customerId: string, ms: number): Promise<StreamTimeResult> {
    const add = Math.max(0, Math.round(ms));
    const { tier, allowance } = await this.allowance(customerId);
    const now = this.opts.now();
    const cal = calendar(now);
    let totals: [number, number] | undefined;
    let source: StreamTimeResult["source"] = "memory";
    if (this.opts.redis !== null) {
      totals = await this.tryRedis(this.opts.redis, customerId, add, now, cal);
      source = totals === undefined ? "fallback" : "redis";
    }
    totals ??= await this.chargeLocal(customerId, add, cal);
    if (add > 0) {
      this.opts.usage.recordStream(customerId, cal.month, add);
      this.opts.events?.charged(add, source);
    }
    return { tier, allowance, dayMs: totals[0], monthMs: totals[1], now, cal, source };
  }

  private async chargeLocal(customerId: string, add: number, cal: CalendarWindows): Promise<[number, number]> {
    let e = this.local.get(customerId);
    if (e === undefined || e.monthKey !== cal.month) {
      const seed = await this.opts.usage.durableStreamMs(customerId, cal.month);
      // Re-read: another charge may have created it while the seed was read.
      e = this.local.get(customerId);
      if (e === undefined || e.monthKey !== cal.month) {
        e = { dayKey: cal.day, dayMs: 0, monthKey: cal.month, monthMs: seed };
        this.local.set(customerId, e);
      }
    }
    if (e.dayKey !== cal.day) {
      e.dayKey = cal.day;
      e.dayMs = 0;
    }
    e.dayMs += add;
    e.monthMs += add;
    return [e.dayMs, e.monthMs];
  }

  private async tryRedis(
    client: RedisClient,
    customerId: string,
    add: number,
    now: number,
    cal: CalendarWindows,
  ): Promise<[number, number] | undefined> {
    const t = performance.now();
    if (t < this.degradedUntil || client.status !== "ready") return undefined;
    const base = `${this.opts.keyPrefix}st:{${customerId}}`;
    const keys = [`${base}:d:${cal.day}`, `${base}:m:${cal.month}`];
    // Kept an hour past the day and a day past the month, then Redis forgets them.
    const dayTtl = cal.nextDayAt - now + 3_600_000;
    const monthTtl = cal.nextMonthAt - now + 86_400_000;
    try {
      let r = await this.bounded(client.eval(CHARGE_LUA, 2, ...keys, add, dayTtl, monthTtl, ""));
      if (r === -1) {
        const seed = await this.opts.usage.durableStreamMs(customerId, cal.month);
        r = await this.bounded(client.eval(CHARGE_LUA, 2, ...keys, add, dayTtl, monthTtl, seed));
      }
      if (!Array.isArray(r)) throw new Error("unexpected answer from the stream-time script");
      return [Number(r[0]), Number(r[1])];
    } catch (e) {
      this.degradedUntil = t + this.opts.redisRetryMs;
      this.opts.events?.redisFailure(e instanceof Timeout ? "timeout" : "error");
      return undefined;
    }
  }

  private bounded<T>(p: Promise<T>): Promise<T> {
    // Charges are a few per session per minute, not per frame: a timer per call is fine here.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Timeout("stream-time Redis timeout")), this.opts.redisTimeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}
