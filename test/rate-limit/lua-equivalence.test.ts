import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calendar } from "../../src/modules/rate-limit/calendar.ts";
import type { LimitResult } from "../../src/modules/rate-limit/limiter.ts";
import { MemoryLimiter } from "../../src/modules/rate-limit/memory-limiter.ts";
import type { Limits } from "../../src/modules/rate-limit/policy.ts";
import { RedisLimiter } from "../../src/modules/rate-limit/redis-limiter.ts";
import type { RedisHandle } from "../../src/platform/redis.ts";
import { testRedis } from "../helpers/app.ts";
import { hasRedis } from "../helpers/limits.ts";

/** The Lua decision `r` equals the in-process one `m` (retry-after within the 1 ms rounding). */
function expectSameDecision(r: LimitResult, m: LimitResult, limits: Limits): void {
  expect(r.allowed).toBe(m.allowed);
  expect(r.violated).toEqual(m.violated);
  expect(r.day).toBe(m.day);
  expect(r.month).toBe(m.month);
  if (limits.perMinute !== null) expect(r.minuteRemaining).toBe(m.minuteRemaining);
  expect(Math.abs(r.retryAfterMs - Math.ceil(m.retryAfterMs))).toBeLessThanOrEqual(1);
}

describe.skipIf(!hasRedis)("the Lua script and the in-process limiter agree", () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = testRedis();
    for (let i = 0; i < 100 && redis.client?.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 20));
  });
  afterAll(async () => {
    await redis.close();
  });

  const nullable = (max: number) => fc.option(fc.integer({ min: 0, max }), { nil: null, freq: 4 });

  it("on every decision, for random limits and request timings", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ perMinute: nullable(20), perDay: nullable(30), perMonth: nullable(40) }),
        fc.integer({ min: 0, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 60 }),
        async (limits: Limits, seed, gaps) => {
          const customerId = randomBytes(8).toString("hex");
          const memory = new MemoryLimiter();
          const lua = new RedisLimiter(redis.client as NonNullable<RedisHandle["client"]>, redis.keyPrefix);
          let now = Date.UTC(2026, 10, 30, 23, 55, 0); // crosses a day and a month boundary
          for (const gap of gaps) {
            now += gap;
            const req = { customerId, limits, now, cal: calendar(now), cost: 1, monthSeed: seed };
            const m = memory.check(req) as LimitResult;
            expectSameDecision((await lua.check(req)) as LimitResult, m, limits);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it("on every decision when calls of one customer arrive in the same turn (one batched script call)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ perMinute: nullable(20), perDay: nullable(30), perMonth: nullable(40) }),
        fc.integer({ min: 0, max: 50 }),
        // Each step: a gap, then a burst of calls in one turn, each a few ms (or seconds) after
        // the one before, so the script's per-call times and GCRA refills within a batch count.
        fc.array(
          fc.record({
            gap: fc.integer({ min: 0, max: 20_000 }),
            burst: fc.array(
              fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 4_000 })),
              {
                minLength: 1,
                maxLength: 12,
              },
            ),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (limits: Limits, seed, steps) => {
          const customerId = randomBytes(8).toString("hex");
          const other = randomBytes(8).toString("hex");
          const memory = new MemoryLimiter();
          const lua = new RedisLimiter(redis.client as NonNullable<RedisHandle["client"]>, redis.keyPrefix);
          let now = Date.UTC(2026, 10, 30, 23, 55, 0);
          // Cold month counter and no seed: every call of the burst is asked for it.
          const cold = { customerId, limits, now, cal: calendar(now), cost: 1 };
          expect(await Promise.all([lua.check(cold), lua.check(cold)])).toEqual(["needs-seed", "needs-seed"]);
          for (const { gap, burst } of steps) {
            now += gap;
            const reqs = burst.map((step) => {
              now += step;
              return { customerId, limits, now, cal: calendar(now), cost: 1, monthSeed: seed };
            });
            const expected = reqs.map((req) => memory.check(req) as LimitResult);
            // Another customer's call in the same turn rides in the same pipeline.
            const mixed = await Promise.all([
              ...reqs.map((req) => lua.check(req)),
              lua.check({ ...(reqs[0] as (typeof reqs)[number]), customerId: other }),
            ]);
            const got = mixed.slice(0, reqs.length) as LimitResult[];
            got.forEach((r, i) => {
              expectSameDecision(r, expected[i] as LimitResult, limits);
            });
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it("many customers in one turn (on a Redis Cluster: one pipeline per node) are each counted once", async () => {
    const lua = new RedisLimiter(redis.client as NonNullable<RedisHandle["client"]>, redis.keyPrefix);
    const now = Date.UTC(2026, 11, 6, 5, 0, 0);
    const limits = { perMinute: 100, perDay: 100, perMonth: 100 };
    const customers = Array.from({ length: 24 }, () => randomBytes(8).toString("hex"));
    const req = (customerId: string) => ({ customerId, limits, now, cal: calendar(now), cost: 1, monthSeed: 7 });
    for (let round = 1; round <= 2; round++) {
      const got = (await Promise.all(
        customers.flatMap((c) => [lua.check(req(c)), lua.check(req(c))]),
      )) as LimitResult[];
      for (const r of got) expect(r.allowed).toBe(true);
      for (let i = 0; i < customers.length; i++) expect(got[2 * i + 1]?.month).toBe(7 + 2 * round);
    }
  });
});
