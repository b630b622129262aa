import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { testRedis } from "../../../test/helpers/app.ts";
import type { Tier } from "../../platform/auth.ts";
import type { RedisHandle } from "../../platform/redis.ts";
import {
  StreamTimeMeter,
  type StreamTimeMeterOptions,
  streamExhausted,
  streamHeaders,
  streamLeftMs,
  streamRemainingMs,
  streamRetryAfterMs,
} from "./stream-time.ts";
import type { MonthIncrement, UsageRepo } from "./usage.repo.ts";
import { UsageRecorder } from "./usage-recorder.ts";

const hasRedis = process.env.TEST_REDIS_URL !== undefined;

/** A usage repo in memory: durable stream ms per customer|month. */
function memoryRepo(stored = new Map<string, number>()) {
  const repo = {
    monthCount: async () => 0,
    monthStreamMs: async (c: string, m: string) => stored.get(`${c}|${m}`) ?? 0,
    addMonthly: async (batch: readonly MonthIncrement[]) => {
      for (const b of batch)
        stored.set(`${b.customerId}|${b.month}`, (stored.get(`${b.customerId}|${b.month}`) ?? 0) + b.streamMs);
    },
  };
  return { repo: repo as unknown as UsageRepo, stored };
}

function meter(opts: {
  redis?: RedisHandle;
  clock: { t: number };
  tier?: Tier;
  /** Stream overage on with this cap (seconds). */
  overageCap?: number;
  stored?: Map<string, number>;
  events?: StreamTimeMeterOptions["events"];
}) {
  const { repo, stored } = memoryRepo(opts.stored);
  const usage = new UsageRecorder(repo);
  const m = new StreamTimeMeter({
    redis: opts.redis?.client ?? null,
    keyPrefix: opts.redis?.keyPrefix ?? "t:",
    usage,
    now: () => opts.clock.t,
    redisTimeoutMs: 500,
    redisRetryMs: 60_000,
    events: opts.events,
    cacheFreshMs: 60_000,
    cacheStaleMs: 60_000,
    load: async () => ({
      tier: opts.tier ?? "free",
      streamSecondsPerDay: null,
      streamSecondsPerMonth: null,
      streamMaxFps: null,
      overageEnabled: opts.overageCap !== undefined,
      overageCapStreamSeconds: opts.overageCap ?? null,
    }),
  });
  return { m, usage, stored };
}

const redisHandles: RedisHandle[] = [];
afterAll(async () => {
  for (const r of redisHandles) await r.close();
});

for (const backend of ["memory", "redis"] as const) {
  describe.skipIf(backend === "redis" && !hasRedis)(`StreamTimeMeter (${backend})`, () => {
    const redis = async () => {
      if (backend === "memory") return undefined;
      const r = testRedis(`t:${randomBytes(6).toString("hex")}:`);
      redisHandles.push(r);
      for (let i = 0; i < 100 && r.client?.status !== "ready"; i++) await new Promise((ok) => setTimeout(ok, 20));
      return r;
    };

    it("charges session time against the free tier's 30 min/day and refuses once it is spent", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const { m } = meter({ redis: await redis(), clock });
      const c = randomUUID();
      const fresh = await m.peek(c);
      expect(fresh.dayMs).toBe(0);
      expect(fresh.source).toBe(backend);
      expect(streamLeftMs(fresh)).toBe(30 * 60_000);
      await m.charge(c, 29 * 60_000);
      const near = await m.charge(c, 59_000);
      expect(streamRemainingMs(near, "stream_day")).toBe(1_000);
      expect(streamExhausted(near)).toEqual([]);
      const spent = await m.charge(c, 5_000);
      expect(spent.dayMs).toBe(30 * 60_000 + 4_000);
      expect(streamExhausted(spent)).toEqual(["stream_day"]);
      // Retry when the UTC day turns.
      expect(streamRetryAfterMs(spent)).toBe(12 * 3_600_000);
      // The next day starts at 0; the month keeps counting.
      clock.t += 12 * 3_600_000;
      const tomorrow = await m.peek(c);
      expect(tomorrow.dayMs).toBe(0);
      expect(tomorrow.monthMs).toBe(30 * 60_000 + 4_000);
      expect(streamExhausted(tomorrow)).toEqual([]);
    });

    it("counts concurrent charges of one customer exactly", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const { m } = meter({ redis: await redis(), clock, tier: "pro" });
      const c = randomUUID();
      await Promise.all(Array.from({ length: 50 }, () => m.charge(c, 1_000)));
      const r = await m.peek(c);
      expect(r.dayMs).toBe(50_000);
      expect(r.monthMs).toBe(50_000);
    });

    it("starts a cold month from the durable count and writes charges to it", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const c = randomUUID();
      const stored = new Map([[`${c}|2026-12-01`, 5 * 3_600_000 - 10_000]]);
      const { m, usage } = meter({ redis: await redis(), clock, stored });
      const before = await m.peek(c);
      expect(before.monthMs).toBe(5 * 3_600_000 - 10_000);
      expect(streamLeftMs(before)).toBe(10_000);
      const after = await m.charge(c, 10_000);
      expect(streamExhausted(after)).toEqual(["stream_month"]);
      expect(streamRetryAfterMs(after)).toBe(Date.UTC(2027, 0, 1) - clock.t);
      await usage.flush();
      expect(stored.get(`${c}|2026-12-01`)).toBe(5 * 3_600_000);
    });

    it("stream overage (Pro, opted in) lifts the month allowance by the cap and says so in Billing-Overage", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const c = randomUUID();
      const included = 200 * 3_600;
      const stored = new Map([[`${c}|2026-12-01`, (included - 10) * 1_000]]);
      const { m } = meter({ redis: await redis(), clock, tier: "pro", overageCap: 60, stored });
      const before = await m.peek(c);
      expect(before.allowance.secondsPerMonth).toBe(included + 60);
      expect(streamHeaders(before)["Billing-Overage"]).toBeUndefined();
      expect(streamHeaders(before)["RateLimit-Policy"]).toContain(`"stream_month";q=${included + 60}`);
      const over = await m.charge(c, 40_000);
      expect(streamExhausted(over)).toEqual([]);
      expect(streamHeaders(over)["Billing-Overage"]).toBe("stream_seconds=30;cap=60");
      const capped = await m.charge(c, 40_000);
      expect(streamExhausted(capped)).toEqual(["stream_month"]);
      expect(streamHeaders(capped)["Billing-Overage"]).toBe("stream_seconds=60;cap=60");
    });

    it("gives no stream overage to a tier that may not opt in (free), whatever its columns say", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const { m } = meter({ redis: await redis(), clock, tier: "free", overageCap: 600 });
      const r = await m.peek(randomUUID());
      expect(r.allowance.secondsPerMonth).toBe(5 * 3_600);
      expect(r.allowance.overage).toBeUndefined();
    });

    it("leaves enterprise unlimited", async () => {
      const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
      const { m } = meter({ redis: await redis(), clock, tier: "enterprise" });
      const r = await m.charge(randomUUID(), 100 * 3_600_000);
      expect(streamLeftMs(r)).toBeNull();
      expect(streamExhausted(r)).toEqual([]);
    });
  });
}

describe("StreamTimeMeter: Redis failing", () => {
  it("falls back to the in-process counters (seeded from the durable month) and says so", async () => {
    const clock = { t: Date.UTC(2026, 11, 5, 12, 0, 0) };
    const c = randomUUID();
    const stored = new Map([[`${c}|2026-12-01`, 60_000]]);
    const failing = {
      status: "ready",
      eval: () => Promise.reject(new Error("READONLY")),
    } as unknown as RedisHandle["client"];
    const seen: string[] = [];
    const events = {
      charged: (ms: number, source: string) => seen.push(`charged ${ms} ${source}`),
      redisFailure: (reason: string) => seen.push(`redis ${reason}`),
    };
    const { m } = meter({ redis: { client: failing, keyPrefix: "t:" } as RedisHandle, clock, stored, events });
    const r = await m.charge(c, 5_000);
    expect(r.source).toBe("fallback");
    expect(seen).toEqual(["redis error", "charged 5000 fallback"]);
    expect(r.dayMs).toBe(5_000);
    expect(r.monthMs).toBe(65_000);
  });
});
