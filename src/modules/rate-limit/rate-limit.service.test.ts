import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CustomerLimitsCache } from "./customer-limits.ts";
import { RateLimitService } from "./rate-limit.service.ts";
import type { UsageRepo } from "./usage.repo.ts";
import { UsageRecorder } from "./usage-recorder.ts";

/** A Redis stand-in whose EVALSHA answers are released by the test (or never). */
function fakeRedis() {
  const waiting: ((v: unknown) => void)[] = [];
  const client = {
    status: "ready",
    evalsha: () => new Promise((resolve) => waiting.push(resolve)),
  };
  // LIMIT_SCRIPT's reply for one call: the counters before it (TAT, day, month), then its verdict.
  const answer = (i: number) => waiting[i]?.(["0", "0", 0, 0]);
  return { client: client as unknown as Redis, waiting, answer };
}

function service(redis: Redis, redisTimeoutMs: number) {
  const repo = { monthCount: async () => 0, addMonthly: async () => {} } as unknown as UsageRepo;
  const customerLimits = new CustomerLimitsCache({
    freshMs: 60_000,
    staleMs: 60_000,
    now: Date.now,
    load: async () => ({
      tier: "free",
      rateLimitPerMinute: null,
      quotaPerDay: null,
      quotaPerMonth: null,
      overageEnabled: false,
      overageCapRequests: null,
    }),
  });
  return new RateLimitService({
    redis,
    keyPrefix: "t:",
    usage: new UsageRecorder(repo),
    customerLimits,
    now: Date.now,
    redisTimeoutMs,
    redisRetryMs: 60_000,
    instanceCount: 2,
  });
}

describe("RateLimitService: the shared Redis deadline", () => {
  // Fake clocks: on a loaded machine a real 40 ms sleep can outlast a 60 ms deadline.
  beforeEach(() => {
    vi.useFakeTimers({
      toFake: [
        "setTimeout",
        "clearTimeout",
        "setInterval",
        "clearInterval",
        "setImmediate",
        "clearImmediate",
        "Date",
        "performance",
      ],
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("answers from Redis when Redis answers in time", async () => {
    const redis = fakeRedis();
    const s = service(redis.client, 1_000);
    const p = s.consume("c1");
    await vi.advanceTimersByTimeAsync(5);
    redis.answer(0);
    const r = await p;
    expect(r.source).toBe("redis");
    expect(r.allowed).toBe(true);
    expect(r.month).toBe(1);
  });

  it("fails every call still waiting past the deadline over to the in-process limiter", async () => {
    const redis = fakeRedis();
    const s = service(redis.client, 30);
    const first = s.consume("c1");
    await vi.advanceTimersByTimeAsync(10);
    const second = s.consume("c2");
    const both = Promise.all([first, second]);
    // Past both deadlines (the second call's ends at 40 ms).
    await vi.advanceTimersByTimeAsync(50);
    const [a, b] = await both;
    expect(a.source).toBe("fallback");
    expect(b.source).toBe("fallback");
    expect(s.status().mode).toBe("fallback");
    // A late answer changes nothing.
    redis.answer(0);
    redis.answer(1);
    await vi.advanceTimersByTimeAsync(5);
    expect(s.status().mode).toBe("fallback");
  });

  it("times a call out from its own start, not the first call's", async () => {
    const redis = fakeRedis();
    const s = service(redis.client, 60);
    const first = s.consume("c1");
    await vi.advanceTimersByTimeAsync(40);
    const second = s.consume("c2");
    redis.answer(0);
    expect((await first).source).toBe("redis");
    // The watchdog fires at the first call's deadline (~60 ms): the second, 20 ms old, must survive it.
    await vi.advanceTimersByTimeAsync(30);
    redis.answer(1);
    expect((await second).source).toBe("redis");
  });
});
