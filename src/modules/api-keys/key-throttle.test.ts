import { afterAll, afterEach, describe, expect, it } from "vitest";
import { clearRedisPrefix, redisKeys, testRedis } from "../../../test/helpers/app.ts";
import { brokenRedis, redisReady } from "../../../test/helpers/broken-redis.ts";
import { createKeyThrottle, KeyFailureThrottle, RedisKeyFailureThrottle } from "./key-throttle.ts";

const hasRedis = process.env.TEST_REDIS_URL !== undefined;
const SECRET = "test-secret-key-that-is-long-enough-0123456789";

describe("KeyFailureThrottle", () => {
  let now = 1_000_000;
  const throttles: KeyFailureThrottle[] = [];
  const make = (limit: number) => {
    const t = new KeyFailureThrottle(limit, { windowMs: 60_000, now: () => now });
    throttles.push(t);
    return t;
  };
  afterEach(() => {
    for (const t of throttles.splice(0)) t.close();
  });

  it("does not throttle below the limit, per IP", () => {
    const t = make(2);
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: false });
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    expect(t.check("b", "k1")).toEqual({ throttled: false });
  });

  it("looks up at most `limit` distinct keys per throttled IP and window; repeats are free", () => {
    const t = make(2);
    t.fail("a");
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    for (let i = 0; i < 5; i++) expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: true });
    expect(t.check("a", "k3")).toEqual({ throttled: true, lookup: false });
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
  });

  it("forgets everything when the window ends", () => {
    const t = make(1);
    expect(t.fail("a")).toBe(60);
    expect(t.check("a", "k1").throttled).toBe(true);
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: false });
    now += 60_000;
    expect(t.check("a", "k2")).toEqual({ throttled: false });
    t.fail("a");
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: true });
  });
});

describe("RedisKeyFailureThrottle fallback (no Redis needed)", () => {
  it("decides in process when every Redis command fails, and keeps counting there", async () => {
    const redis = brokenRedis();
    const t = new RedisKeyFailureThrottle(redis, 2, { secret: SECRET });
    try {
      expect(await t.check("a", "k1")).toEqual({ throttled: false });
      expect(await t.fail("a")).toBeGreaterThan(0);
      await t.fail("a");
      expect(await t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
      expect(await t.check("a", "k2")).toEqual({ throttled: true, lookup: true });
      expect(await t.check("a", "k3")).toEqual({ throttled: true, lookup: false });
      expect(redis.calls).toBeGreaterThan(0);
    } finally {
      t.close();
    }
  });

  it("picks the in-process throttle without Redis", async () => {
    const redis = testRedis();
    const t = createKeyThrottle(redis, 3, SECRET);
    expect(t).toBeInstanceOf(hasRedis ? RedisKeyFailureThrottle : KeyFailureThrottle);
    t.close();
    await redis.close();
  });
});

describe.skipIf(!hasRedis)("RedisKeyFailureThrottle (shared by instances)", () => {
  const redis = testRedis();
  const other = testRedis(redis.keyPrefix);
  afterAll(async () => {
    await clearRedisPrefix(redis);
    await redis.close();
    await other.close();
  });

  it("failures on either instance count towards one limit per IP, and one set of lookups", async () => {
    await redisReady(redis);
    await redisReady(other);
    const a = new RedisKeyFailureThrottle(redis, 2, { secret: SECRET });
    const b = new RedisKeyFailureThrottle(other, 2, { secret: SECRET });
    try {
      expect(await a.fail("203.0.113.5")).toBeCloseTo(60, 0);
      expect(await b.check("203.0.113.5", "k1")).toEqual({ throttled: false });
      expect(a.local.check("203.0.113.5", "k1")).toEqual({ throttled: false });
      await b.fail("203.0.113.5");
      expect(await a.check("203.0.113.5", "k1")).toEqual({ throttled: true, lookup: true });
      expect(await b.check("203.0.113.5", "k1")).toEqual({ throttled: true, lookup: true }); // a repeat
      expect(await b.check("203.0.113.5", "k2")).toEqual({ throttled: true, lookup: true });
      expect(await a.check("203.0.113.5", "k3")).toEqual({ throttled: true, lookup: false });
      expect(await a.check("203.0.113.6", "k3")).toEqual({ throttled: false });
    } finally {
      a.close();
      b.close();
    }
  });

  it("parallel checks over both instances look up at most `limit` distinct keys", async () => {
    const a = new RedisKeyFailureThrottle(redis, 3, { secret: SECRET });
    const b = new RedisKeyFailureThrottle(other, 3, { secret: SECRET });
    try {
      await Promise.all([a.fail("198.51.100.1"), b.fail("198.51.100.1"), a.fail("198.51.100.1")]);
      const decisions = await Promise.all(
        Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).check("198.51.100.1", `guess-${i}`)),
      );
      expect(decisions.filter((d) => d.throttled && d.lookup)).toHaveLength(3);
    } finally {
      a.close();
      b.close();
    }
  });

  it("keys: no IP or key in clear, one hash tag for both keys, an expiry", async () => {
    const a = new RedisKeyFailureThrottle(redis, 1, { secret: SECRET });
    try {
      await a.fail("192.0.2.44");
      await a.check("192.0.2.44", "vla_live_secretkeymaterial");
      const [n, set] = a.keys("192.0.2.44");
      const tag = /\{[^}]+\}/.exec(n)?.[0];
      expect(tag).toMatch(/^\{[A-Za-z0-9_-]{22}\}$/);
      expect(set).toContain(tag);
      const all = await redisKeys(redis, `${redis.keyPrefix}*`);
      expect(all.join(" ")).not.toContain("192.0.2.44");
      const members = (await redis.client?.smembers(set)) ?? [];
      expect(members).toHaveLength(1);
      expect(members.join(" ")).not.toContain("secretkeymaterial");
      for (const k of [n, set]) {
        const ttl = (await redis.client?.pttl(k)) ?? -1;
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(60_000);
      }
    } finally {
      a.close();
    }
  });
});
