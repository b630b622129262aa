import type { RedisClient } from "../../platform/redis.ts";
import { type CalendarWindows, calendar } from "./calendar.ts";
import type { CustomerLimitsCache } from "./customer-limits.ts";
import type { Limiter, LimitRequest, LimitResult } from "./limiter.ts";
import { MemoryLimiter } from "./memory-limiter.ts";
import type { Limits } from "./policy.ts";
import { RedisLimiter } from "./redis-limiter.ts";
import type { UsageRecorder } from "./usage-recorder.ts";

export type LimiterSource = "redis" | "memory" | "fallback";

/** One metered request's outcome: the decision plus what the headers need. */
export interface MeterResult extends LimitResult {
  readonly limits: Limits;
  readonly now: number;
  readonly cal: CalendarWindows;
  readonly source: LimiterSource;
}

export interface LimiterEvents {
  decision(allowed: boolean, source: LimiterSource): void;
  redisFailure(reason: "timeout" | "error" | "disconnected"): void;
  fallbackChanged(active: boolean): void;
}

export interface RateLimitServiceOptions {
  readonly redis: RedisClient | null;
  readonly keyPrefix: string;
  readonly usage: UsageRecorder;
  readonly customerLimits: CustomerLimitsCache;
  readonly now: () => number;
  readonly redisTimeoutMs: number;
  readonly redisRetryMs: number;
  readonly instanceCount: number;
  readonly events?: LimiterEvents;
}

class RedisTimeout extends Error {}

interface PendingCall {
  readonly at: number;
  settled: boolean;
  readonly reject: (e: unknown) => void;
}

/**
 * Customer rate limits and quotas. With Redis every instance shares one count (one Lua
 * round trip per request); without it, or while Redis fails or answers slower than
 * `redisTimeoutMs`, an in-process limiter serves (as a fallback: with limits divided by the
 * instance count). Redis is tried again every `redisRetryMs`, so recovery needs no restart.
 */
export class RateLimitService {
  private readonly opts: RateLimitServiceOptions;
  private readonly redisLimiter: RedisLimiter | null;
  private readonly local: MemoryLimiter;
  private degradedUntil = 0;
  private inFallback = false;
  private lastFailure: string | undefined;
  /** Redis calls in flight, oldest first, for the shared timeout watchdog. */
  private readonly pending: PendingCall[] = [];
  private watchdog: NodeJS.Timeout | undefined;

  constructor(opts: RateLimitServiceOptions) {
    this.opts = opts;
    this.redisLimiter = opts.redis === null ? null : new RedisLimiter(opts.redis, opts.keyPrefix);
    this.local = new MemoryLimiter(opts.redis === null ? 1 : opts.instanceCount);
  }

  /** Checks and, when every window allows, consumes one request of the customer's quota. */
  consume(customerId: string): Promise<MeterResult> {
    return this.run(customerId, 1);
  }

  /** Current counters without consuming. */
  peek(customerId: string): Promise<MeterResult> {
    return this.run(customerId, 0);
  }

  limitsOf(customerId: string): Promise<Limits> | Limits {
    const c = this.opts.customerLimits.get(customerId);
    return c instanceof Promise ? c.then((x) => x.limits) : c.limits;
  }

  status(): { mode: LimiterSource; detail: string } {
    if (this.redisLimiter === null) return { mode: "memory", detail: "in-process limiter (no Redis configured)" };
    const client = this.opts.redis as RedisClient;
    if (this.inFallback || client.status !== "ready") {
      return {
        mode: "fallback",
        detail: `Redis limiter unavailable (${this.inFallback ? (this.lastFailure ?? "unknown") : `Redis ${client.status}`}); in-process fallback with limits / ${this.opts.instanceCount}`,
      };
    }
    return { mode: "redis", detail: "shared Redis limiter" };
  }

  private async run(customerId: string, cost: number): Promise<MeterResult> {
    const cached = this.opts.customerLimits.get(customerId);
    const limits = (cached instanceof Promise ? await cached : cached).limits;
    const now = this.opts.now();
    const cal = calendar(now);
    const req: LimitRequest = { customerId, limits, now, cal, cost };
    let result: LimitResult | undefined;
    let source: LimiterSource = "memory";
    if (this.redisLimiter !== null) {
      result = await this.tryRedis(this.redisLimiter, req);
      source = result === undefined ? "fallback" : "redis";
    }
    result ??= await this.withSeed(this.local, req);
    if (cost > 0) {
      if (result.allowed) this.opts.usage.record(customerId, cal.month, cost);
      this.opts.events?.decision(result.allowed, source);
    }
    return { ...result, limits, now, cal, source };
  }

  private async tryRedis(limiter: RedisLimiter, req: LimitRequest): Promise<LimitResult | undefined> {
    // Real time, not the (injectable) business clock: this paces retries against a real server.
    const t = performance.now();
    if (t < this.degradedUntil) return undefined;
    const client = this.opts.redis as RedisClient;
    if (client.status !== "ready") {
      this.fail("disconnected", `Redis ${client.status}`, t);
      return undefined;
    }
    try {
      let r = await this.bounded(limiter.check(req));
      if (r === "needs-seed") {
        // Cold Redis (first use this month, or Redis lost its data): start from the durable count.
        const monthSeed = await this.opts.usage.durableCount(req.customerId, req.cal.month);
        r = await this.bounded(limiter.check({ ...req, monthSeed }));
        if (r === "needs-seed") throw new Error("month counter missing after seeding");
      }
      if (this.inFallback) {
        this.inFallback = false;
        this.local.clear();
        this.opts.events?.fallbackChanged(false);
      }
      return r;
    } catch (e) {
      const timeout = e instanceof RedisTimeout;
      this.fail(timeout ? "timeout" : "error", e instanceof Error ? e.message : String(e), t);
      return undefined;
    }
  }

  private fail(reason: "timeout" | "error" | "disconnected", message: string, t: number): void {
    this.lastFailure = `${reason}: ${message}`;
    this.degradedUntil = t + this.opts.redisRetryMs;
    this.opts.events?.redisFailure(reason);
    if (!this.inFallback) {
      this.inFallback = true;
      this.opts.events?.fallbackChanged(true);
    }
  }

  private async withSeed(limiter: Limiter, req: LimitRequest): Promise<LimitResult> {
    const r = await limiter.check(req);
    if (r !== "needs-seed") return r;
    const monthSeed = await this.opts.usage.durableCount(req.customerId, req.cal.month);
    const seeded = await limiter.check({ ...req, monthSeed });
    if (seeded === "needs-seed") throw new Error("limiter refused its seed");
    return seeded;
  }

  /**
   * `p`, or a RedisTimeout once it has taken `redisTimeoutMs`. One shared watchdog timer serves
   * every call in flight (calls on the one connection are answered in order, so the oldest is
   * first in `pending`): no timer, timeout promise or race per request.
   */
  private bounded<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call: PendingCall = { at: performance.now(), settled: false, reject };
      this.pending.push(call);
      this.watchdog ??= setTimeout(this.expire, this.opts.redisTimeoutMs).unref();
      p.then(
        (v) => {
          if (call.settled) return;
          call.settled = true;
          resolve(v);
        },
        (e: unknown) => {
          if (call.settled) return;
          call.settled = true;
          reject(e);
        },
      );
    });
  }

  /** The watchdog: fails calls older than the timeout, drops settled ones, re-arms for the oldest left. */
  private readonly expire = (): void => {
    this.watchdog = undefined;
    const now = performance.now();
    const limit = this.opts.redisTimeoutMs;
    let i = 0;
    for (; i < this.pending.length; i++) {
      const call = this.pending[i] as PendingCall;
      if (call.settled) continue;
      if (now - call.at < limit) break;
      call.settled = true;
      call.reject(new RedisTimeout(`no answer within ${limit} ms`));
    }
    this.pending.splice(0, i);
    const oldest = this.pending[0];
    if (oldest !== undefined) {
      this.watchdog = setTimeout(this.expire, Math.max(1, limit - (now - oldest.at))).unref();
    }
  };
}
