import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from "fastify";
import { Counter, Gauge } from "prom-client";
import type { Config } from "../../config.ts";
import type { Principal } from "../../platform/auth.ts";
import type { Database } from "../../platform/db/client.ts";
import { type AppError, errors } from "../../platform/errors.ts";
import type { HealthRegistry } from "../../platform/health.ts";
import type { InvalidationBus } from "../../platform/invalidation.ts";
import type { Lifecycle } from "../../platform/lifecycle.ts";
import type { Metrics } from "../../platform/metrics.ts";
import type { RedisHandle } from "../../platform/redis.ts";
import { endSpan, requestTrace, startChild } from "../../platform/tracing.ts";
import { CustomerLimitsCache } from "./customer-limits.ts";
import { overageHeader, policyHeader, rateLimitHeader, rateLimitHeaders } from "./headers.ts";
import { type MeterResult, RateLimitService } from "./rate-limit.service.ts";
import { StreamTimeMeter } from "./stream-time.ts";
import { UsageRepo } from "./usage.repo.ts";
import { UsageRecorder } from "./usage-recorder.ts";

/** Invalidation topic: a customer's tier or limit overrides changed. */
export const CUSTOMER_TOPIC = "customer";

/**
 * The metering every inference entry point uses: per request for REST and /act; stream sessions
 * are metered in session time (`streamTime`).
 * Reachable as `platform.limits`. See docs/rate-limits.md.
 */
export interface RateLimits {
  readonly service: RateLimitService;
  readonly customerLimits: CustomerLimitsCache;
  /** Stream session time (robot-seconds) per customer, day and month; stream frames use it, not `consume`. */
  readonly streamTime: StreamTimeMeter;
  /**
   * An `onRequest` hook that consumes one request of the principal's customer quota, sets the
   * RateLimit-Policy and RateLimit headers, and rejects with 429 quota_exceeded. Put it after
   * `platform.auth.require(...)`: `onRequest: [platform.auth.require({ scopes: ["inference"] }), platform.limits.meter()]`.
   */
  meter(): preHandlerAsyncHookHandler;
  /** The same check for one WebSocket frame: never throws for quota; test `result.allowed`. */
  consume(principal: Principal): Promise<MeterResult>;
  /** The 429 problem for a rejected result (headers included), e.g. to send over a socket. */
  quotaError(result: MeterResult): AppError;
  headers(result: MeterResult): Record<string, string>;
  /** Call after changing a customer's tier or limit overrides: every instance reloads them. */
  customerChanged(customerId: string): Promise<void>;
  /** Writes pending durable usage now (tests, shutdown). */
  flush(): Promise<void>;
}

export interface RateLimitsDeps {
  readonly config: Config;
  readonly database: Database;
  readonly redis: RedisHandle;
  readonly metrics: Metrics;
  readonly health: HealthRegistry;
  readonly lifecycle: Lifecycle;
  readonly invalidation: InvalidationBus;
  readonly now: () => number;
}

export function createRateLimits(deps: RateLimitsDeps): RateLimits {
  const { config, metrics } = deps;
  const repo = new UsageRepo(deps.database.db);
  const usage = new UsageRecorder(repo);
  const customerLimits = new CustomerLimitsCache({
    freshMs: config.apiKeys.cacheFreshMs,
    staleMs: config.apiKeys.cacheStaleMs,
    now: deps.now,
    load: async (id) => {
      const row = await repo.customerLimits(id);
      if (row === undefined) throw new Error(`customer ${id} not found`);
      return row;
    },
  });

  const decisions = new Counter({
    name: "vla_rate_limit_decisions_total",
    help: "Metered requests by outcome (allowed/rejected) and limiter (redis, memory, fallback).",
    labelNames: ["outcome", "limiter"],
    registers: [metrics.registry],
  });
  const failures = new Counter({
    name: "vla_rate_limit_redis_failures_total",
    help: "Redis limiter calls that failed, timed out or found Redis disconnected (requests then use the fallback).",
    labelNames: ["reason"],
    registers: [metrics.registry],
  });
  const fallback = new Gauge({
    name: "vla_rate_limit_fallback_active",
    help: "1 while the in-process fallback limiter serves instead of Redis.",
    registers: [metrics.registry],
  });
  const usageFlushFailures = new Counter({
    name: "vla_usage_flush_failures_total",
    help: "Failed batch writes of durable monthly usage (retried at the next flush).",
    registers: [metrics.registry],
  });
  // Pre-bound children: no label hashing per request.
  const bound = {
    redis: [decisions.labels("rejected", "redis"), decisions.labels("allowed", "redis")],
    memory: [decisions.labels("rejected", "memory"), decisions.labels("allowed", "memory")],
    fallback: [decisions.labels("rejected", "fallback"), decisions.labels("allowed", "fallback")],
  } as const;

  const service = new RateLimitService({
    redis: deps.redis.client,
    keyPrefix: deps.redis.keyPrefix,
    usage,
    customerLimits,
    now: deps.now,
    redisTimeoutMs: config.limits.redisTimeoutMs,
    redisRetryMs: config.limits.redisRetryMs,
    instanceCount: config.limits.instanceCount,
    events: {
      decision: (allowed, source) => bound[source][allowed ? 1 : 0].inc(),
      redisFailure: (reason) => failures.inc({ reason }),
      fallbackChanged: (active) => fallback.set(active ? 1 : 0),
    },
  });

  deps.health.register("rate_limiter", async () => {
    const s = service.status();
    return { status: s.mode === "fallback" ? "degraded" : "ok", detail: s.detail };
  });

  const streamSeconds = new Counter({
    name: "vla_stream_time_seconds_total",
    help: "Stream session time charged to customers (robot-seconds), by the counter that took it (redis, memory, fallback).",
    labelNames: ["limiter"],
    registers: [metrics.registry],
  });
  const streamTime = new StreamTimeMeter({
    events: {
      charged: (ms, source) => streamSeconds.inc({ limiter: source }, ms / 1000),
      redisFailure: (reason) => failures.inc({ reason }),
    },
    redis: deps.redis.client,
    keyPrefix: deps.redis.keyPrefix,
    usage,
    now: deps.now,
    redisTimeoutMs: config.limits.redisTimeoutMs,
    redisRetryMs: config.limits.redisRetryMs,
    cacheFreshMs: config.apiKeys.cacheFreshMs,
    cacheStaleMs: config.apiKeys.cacheStaleMs,
    load: async (id) => {
      const row = await repo.customerStreamLimits(id);
      if (row === undefined) throw new Error(`customer ${id} not found`);
      return row;
    },
  });

  deps.invalidation.on(CUSTOMER_TOPIC, (id) => {
    customerLimits.invalidate(id);
    streamTime.invalidate(id);
  });
  deps.invalidation.onReset(() => {
    customerLimits.clear();
    streamTime.clearCache();
  });

  const timer = setInterval(() => {
    usage.flush().catch(() => usageFlushFailures.inc());
  }, config.limits.usageFlushMs);
  timer.unref();
  deps.lifecycle.onFlush("usage counters", async () => {
    clearInterval(timer);
    await usage.flush();
  });

  const quotaError = (r: MeterResult) => errors.quotaExceeded(r.retryAfterMs / 1000, r.violated, rateLimitHeaders(r));

  return {
    service,
    customerLimits,
    streamTime,
    meter() {
      return async (request: FastifyRequest, reply: FastifyReply) => {
        const principal = request.principal;
        if (principal === null) throw errors.unauthorized();
        const span = startChild(requestTrace(request), "rate_limit");
        let r: Awaited<ReturnType<typeof service.consume>>;
        try {
          r = await service.consume(principal.customerId);
        } catch (e) {
          endSpan(span, e);
          throw e;
        }
        if (span !== undefined) endSpan(span, undefined, { "vla.allowed": r.allowed });
        if (!r.allowed) throw quotaError(r);
        const policy = policyHeader(r.limits);
        if (policy !== "") {
          reply.header("RateLimit-Policy", policy);
          reply.header("RateLimit", rateLimitHeader(r));
          if (r.limits.overage !== undefined) {
            const overage = overageHeader(r);
            if (overage !== undefined) reply.header("Billing-Overage", overage);
          }
        }
      };
    },
    consume: (principal) => service.consume(principal.customerId),
    quotaError,
    headers: rateLimitHeaders,
    customerChanged: (customerId) => deps.invalidation.publish(CUSTOMER_TOPIC, customerId),
    flush: () => usage.flush(),
  };
}

/**
 * For billing and admin: call after changing a customer's tier or limit overrides in the
 * database. Every instance drops the customer's cached limits and keys within a second.
 */
export function customerLimitsChanged(platform: { readonly limits: RateLimits }, customerId: string): Promise<void> {
  return platform.limits.customerChanged(customerId);
}
