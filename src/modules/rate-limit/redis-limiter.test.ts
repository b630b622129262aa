import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { calendar } from "./calendar.ts";
import type { LimitRequest } from "./limiter.ts";
import { RedisLimiter } from "./redis-limiter.ts";

/**
 * LIMIT_SCRIPT's reply for `calls` allowed calls after `before` earlier ones: the counters before
 * (TAT, day, month), then a verdict per call (0 = allowed).
 */
const reply = (before: number, calls: number) => [
  "0",
  String(before),
  before,
  ...Array.from({ length: calls }, () => 0),
];

function request(customerId: string): LimitRequest {
  const now = Date.UTC(2026, 10, 27, 1, 0, 0);
  return {
    customerId,
    limits: { perMinute: 10, perDay: 100, perMonth: 1_000 },
    now,
    cal: calendar(now),
    cost: 1,
  };
}

function fakeRedis(options: { noscriptInPipeline?: boolean } = {}) {
  const log: string[] = [];
  let n = 0;
  const client = {
    evalsha: async (...args: unknown[]) => {
      // [sha, 3, key x3, count, ...]
      const calls = Number(args[5]);
      log.push(calls === 1 ? "evalsha" : `evalsha batch x${calls}`);
      n += calls;
      return reply(n - calls, calls);
    },
    eval: async (...args: unknown[]) => {
      log.push("eval");
      const calls = Number(args[4]);
      n += calls;
      return reply(n - calls, calls);
    },
    pipeline: () => {
      const queued: unknown[][] = [];
      const p = {
        evalsha: (...args: unknown[]) => {
          queued.push(args);
          return p;
        },
        exec: async () => {
          log.push(`pipeline x${queued.length}`);
          return queued.map((args, i) => {
            if (options.noscriptInPipeline === true && i === 1)
              return [new Error("NOSCRIPT No matching script."), null];
            const calls = Number(args[5]);
            n += calls;
            return [null, reply(n - calls, calls)];
          });
        },
      };
      return p;
    },
  };
  return { client: client as unknown as Redis, log };
}

describe("RedisLimiter: calls of one event-loop turn share a write", () => {
  it("sends a lone call as one EVALSHA", async () => {
    const redis = fakeRedis();
    const limiter = new RedisLimiter(redis.client, "t:");
    const r = await limiter.check(request("a"));
    expect(r).not.toBe("needs-seed");
    expect(redis.log).toEqual(["evalsha"]);
  });

  it("pipelines the calls made in the same turn and answers each with its own reply", async () => {
    const redis = fakeRedis();
    const limiter = new RedisLimiter(redis.client, "t:");
    const results = await Promise.all(["a", "b", "c"].map((c) => limiter.check(request(c))));
    expect(redis.log).toEqual(["pipeline x3"]);
    expect(results.map((r) => (r === "needs-seed" ? -1 : r.day))).toEqual([1, 2, 3]);
    // The next turn starts a new batch.
    await limiter.check(request("d"));
    expect(redis.log).toEqual(["pipeline x3", "evalsha"]);
  });

  it("retries a call whose script Redis lost (NOSCRIPT) on its own", async () => {
    const redis = fakeRedis({ noscriptInPipeline: true });
    const limiter = new RedisLimiter(redis.client, "t:");
    const results = await Promise.all(["a", "b", "c"].map((c) => limiter.check(request(c))));
    expect(results.every((r) => r !== "needs-seed")).toBe(true);
    expect(redis.log).toEqual(["pipeline x3", "evalsha"]);
  });

  it("sends the calls of one customer in one turn as one batched script call, each answered in order", async () => {
    const redis = fakeRedis();
    const limiter = new RedisLimiter(redis.client, "t:");
    const results = await Promise.all([1, 2, 3, 4].map(() => limiter.check(request("a"))));
    expect(redis.log).toEqual(["evalsha batch x4"]);
    expect(results.map((r) => (r === "needs-seed" ? -1 : r.day))).toEqual([1, 2, 3, 4]);
    // Two customers: their groups share one pipeline write.
    const mixed = await Promise.all(["a", "b", "a"].map((c) => limiter.check(request(c))));
    expect(redis.log).toEqual(["evalsha batch x4", "pipeline x2"]);
    expect(mixed.map((r) => (r === "needs-seed" ? -1 : r.day))).toEqual([5, 7, 6]);
  });
});

describe("RedisLimiter: the caller replays the script's decisions", () => {
  it("fails the whole group when a verdict differs from the replay (never trusts half an answer)", async () => {
    // Counters before: nothing spent; the script says the second call broke the minute window.
    const client = { evalsha: async () => ["0", "0", 0, 0, 1] } as unknown as Redis;
    const limiter = new RedisLimiter(client, "t:");
    const calls = [limiter.check(request("a")), limiter.check(request("a"))];
    for (const c of calls) await expect(c).rejects.toThrow(/verdict 1 differs from the replay's 0/);
  });

  it("derives each call's counts, remaining and reset from the counters before the batch", async () => {
    // Day 5 and month 40 spent, and a GCRA time 30 s ahead: 10/min leaves room for 5 more this minute.
    const now = request("a").now;
    const client = { evalsha: async () => [String(now + 30_000), "5", 40, 0, 0] } as unknown as Redis;
    const limiter = new RedisLimiter(client, "t:");
    const [a, b] = await Promise.all([limiter.check(request("a")), limiter.check(request("a"))]);
    expect(a).toMatchObject({ allowed: true, day: 6, month: 41, minuteRemaining: 4, minuteResetMs: 36_000 });
    expect(b).toMatchObject({ allowed: true, day: 7, month: 42, minuteRemaining: 3, minuteResetMs: 42_000 });
  });
});
