import { afterAll, describe, expect, it } from "vitest";
import { clearRedisPrefix, testRedis } from "../../test/helpers/app.ts";
import { brokenRedis, redisReady } from "../../test/helpers/broken-redis.ts";
import { createWindowHits, MemoryWindowHits, RedisWindowHits, throttleId } from "./shared-throttle.ts";

const hasRedis = process.env.TEST_REDIS_URL !== undefined;
const SECRET = "test-secret-key-that-is-long-enough-0123456789";

describe("throttleId", () => {
  it("is stable per secret, says nothing of the subject, and differs between secrets", () => {
    const id = throttleId(SECRET, "ip:192.0.2.1");
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(throttleId(SECRET, "ip:192.0.2.1")).toBe(id);
    expect(throttleId(SECRET, "ip:192.0.2.2")).not.toBe(id);
    expect(throttleId(`${SECRET}x`, "ip:192.0.2.1")).not.toBe(id);
  });
});

describe("window hits fallback (no Redis needed)", () => {
  it("counts in process when every Redis command fails", async () => {
    const redis = brokenRedis();
    const h = new RedisWindowHits(redis, { name: "register-ip", windowMs: 60_000, secret: SECRET });
    try {
      expect((await h.hit("10.0.0.1")).count).toBe(1);
      expect((await h.hit("10.0.0.1")).count).toBe(2);
      expect((await h.hit("10.0.0.2")).count).toBe(1);
      expect(redis.calls).toBe(3);
    } finally {
      h.close();
    }
  });

  it("picks the in-process counters without Redis", async () => {
    const redis = testRedis();
    const h = createWindowHits(redis, { name: "x", windowMs: 1_000, secret: SECRET });
    expect(h).toBeInstanceOf(hasRedis ? RedisWindowHits : MemoryWindowHits);
    h.close();
    await redis.close();
  });
});

describe.skipIf(!hasRedis)("RedisWindowHits (shared by instances)", () => {
  const redis = testRedis();
  const other = testRedis(redis.keyPrefix);
  afterAll(async () => {
    await clearRedisPrefix(redis);
    await redis.close();
    await other.close();
  });

  it("one count for both instances, parallel hits included, in a window that expires", async () => {
    await redisReady(redis);
    await redisReady(other);
    const a = new RedisWindowHits(redis, { name: "email-ip", windowMs: 900_000, secret: SECRET });
    const b = new RedisWindowHits(other, { name: "email-ip", windowMs: 900_000, secret: SECRET });
    try {
      const hits = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).hit("10.9.8.7")));
      expect(hits.map((h) => h.count).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      for (const h of hits) {
        expect(h.resetInMs).toBeGreaterThan(0);
        expect(h.resetInMs).toBeLessThanOrEqual(900_000);
      }
      const key = a.key("10.9.8.7");
      expect(key).toMatch(new RegExp(`^${redis.keyPrefix}throttle:email-ip:\\{[A-Za-z0-9_-]{22}\\}$`));
      expect(key).not.toContain("10.9.8.7");
      const ttl = (await redis.client?.pttl(key)) ?? -1;
      expect(ttl).toBeGreaterThan(0);
    } finally {
      a.close();
      b.close();
    }
  });
});
