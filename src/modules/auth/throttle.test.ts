import { afterAll, describe, expect, it } from "vitest";
import { clearRedisPrefix, redisKeys, testRedis } from "../../../test/helpers/app.ts";
import { brokenRedis, redisReady } from "../../../test/helpers/broken-redis.ts";
import { createAuthThrottles, FailureThrottle, RedisFailureThrottle } from "./throttle.ts";

const policy = { free: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, forgetAfterMs: 60_000 };
const hasRedis = process.env.TEST_REDIS_URL !== undefined;
const SECRET = "test-secret-key-that-is-long-enough-0123456789";

describe("FailureThrottle", () => {
  it("lets the free failures through, then blocks with doubling delays up to the cap", () => {
    const t = new FailureThrottle(policy);
    const now = 1_000_000;
    for (let i = 0; i < 3; i++) t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(0);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(1_000);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(2_000);
    t.failure("a", now);
    t.failure("a", now);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(8_000);
    expect(t.retryAfterMs("a", now + 8_000)).toBe(0);
    expect(t.retryAfterMs("b", now)).toBe(0);
  });

  it("forgets failures after the quiet period and on success", () => {
    const t = new FailureThrottle(policy);
    for (let i = 0; i < 4; i++) t.failure("a", 0);
    expect(t.failures("a", 0)).toBe(4);
    expect(t.failures("a", 61_001)).toBe(0);
    for (let i = 0; i < 4; i++) t.failure("b", 0);
    t.success("b");
    expect(t.retryAfterMs("b", 0)).toBe(0);
  });

  it("stays bounded in memory", () => {
    const t = new FailureThrottle(policy, 10);
    for (let i = 0; i < 100; i++) t.failure(`k${i}`, 0);
    expect(t.failures("k99", 0)).toBe(1);
    expect(t.failures("k0", 0)).toBe(0);
  });

  it("charges an attempt when it begins, refuses without charging while blocked", () => {
    const t = new FailureThrottle(policy);
    // Four attempts in flight at once: each sees the charges of those before it.
    expect([0, 1, 2, 3].map(() => t.beginSync("a", 0))).toEqual([0, 0, 0, 0]);
    expect(t.failures("a", 0)).toBe(4);
    expect(t.beginSync("a", 0)).toBe(1_000);
    expect(t.failures("a", 0)).toBe(4);
    expect(t.beginSync("a", 1_000)).toBe(0);
  });

  it("a refund takes one charge back and lifts a block the count no longer earns", () => {
    const t = new FailureThrottle(policy);
    for (let i = 0; i < 4; i++) t.beginSync("ip", 0);
    expect(t.retryAfterMs("ip", 0)).toBe(1_000);
    t.refundSync("ip", 0); // the fourth attempt succeeded: three failures, no block
    expect(t.failures("ip", 0)).toBe(3);
    expect(t.retryAfterMs("ip", 0)).toBe(0);
    for (let i = 0; i < 3; i++) t.refundSync("ip", 0);
    expect(t.failures("ip", 0)).toBe(0);
    t.refundSync("ip", 0); // nothing left: no negative counts
    expect(t.failures("ip", 0)).toBe(0);
  });
});

describe("RedisFailureThrottle fallback (no Redis needed)", () => {
  it("decides in process when every Redis command fails, and keeps counting there", async () => {
    const redis = brokenRedis();
    const t = new RedisFailureThrottle(redis, { name: "login", policy, secret: SECRET });
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) waits.push(await t.begin("acct:a@example.com"));
    // Neither open (every attempt let through) nor closed (every attempt refused).
    expect(waits.slice(0, 4)).toEqual([0, 0, 0, 0]);
    expect(waits[4]).toBeGreaterThan(0);
    expect(redis.calls).toBeGreaterThan(0);
    await t.clear("acct:a@example.com");
    expect(await t.begin("acct:a@example.com")).toBe(0);
  });

  it("does not wait for a Redis that is not connected", async () => {
    const redis = brokenRedis("reconnecting");
    const t = new RedisFailureThrottle(redis, { name: "login", policy, secret: SECRET });
    for (let i = 0; i < 4; i++) expect(await t.begin("k")).toBe(0);
    expect(await t.begin("k")).toBeGreaterThan(0);
    await t.refund("k");
    expect(redis.calls).toBe(0);
  });

  it("without Redis the auth throttles are the in-process ones", async () => {
    const redis = testRedis();
    const t = createAuthThrottles(redis, { secret: SECRET });
    expect(t.account).toBeInstanceOf(hasRedis ? RedisFailureThrottle : FailureThrottle);
    expect(t.ip).toBeInstanceOf(hasRedis ? RedisFailureThrottle : FailureThrottle);
    t.registrations.close();
    t.emailsPerAddress.close();
    t.emailRequestsPerIp.close();
    await redis.close();
  });
});

describe.skipIf(!hasRedis)("RedisFailureThrottle (shared by instances)", () => {
  const redis = testRedis();
  const other = testRedis(redis.keyPrefix); // a second instance sharing the prefix
  afterAll(async () => {
    await clearRedisPrefix(redis);
    await redis.close();
    await other.close();
  });
  let t = 5_000_000;
  const make = (h: typeof redis) =>
    new RedisFailureThrottle(h, { name: "login", policy, secret: SECRET, now: () => t });

  it("one budget for both instances, however the attempts are spread", async () => {
    await redisReady(redis);
    await redisReady(other);
    const a = make(redis);
    const b = make(other);
    expect(await a.begin("acct:x@example.com")).toBe(0);
    expect(await b.begin("acct:x@example.com")).toBe(0);
    expect(await a.begin("acct:x@example.com")).toBe(0);
    expect(await b.begin("acct:x@example.com")).toBe(0); // the fourth failure blocks for 1 s
    expect(await a.begin("acct:x@example.com")).toBe(1_000);
    expect(await b.begin("acct:x@example.com")).toBe(1_000);
    expect(await b.begin("acct:y@example.com")).toBe(0);
    t += 1_000;
    expect(await a.begin("acct:x@example.com")).toBe(0); // the fifth: 2 s
    expect(await b.begin("acct:x@example.com")).toBe(2_000);
    await b.clear("acct:x@example.com");
    expect(await a.begin("acct:x@example.com")).toBe(0);
  });

  it("parallel attempts over both instances never get past the budget", async () => {
    const a = make(redis);
    const b = make(other);
    const waits = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).begin("ip:198.51.100.9")),
    );
    // Three free failures and the fourth (which starts the block) get through; nothing more.
    expect(waits.filter((w) => w === 0)).toHaveLength(4);
  });

  it("a refund on one instance hands the charge back for both", async () => {
    const a = make(redis);
    const b = make(other);
    for (let i = 0; i < 4; i++) expect(await a.begin("ip:203.0.113.1")).toBe(0);
    expect(await b.begin("ip:203.0.113.1")).toBeGreaterThan(0);
    await b.refund("ip:203.0.113.1");
    expect(await a.begin("ip:203.0.113.1")).toBe(0);
  });

  it("keys: no email in clear, one hash tag, an expiry", async () => {
    const a = make(redis);
    await a.begin("acct:secret-person@example.com");
    const key = a.key("acct:secret-person@example.com");
    expect(key).toMatch(new RegExp(`^${redis.keyPrefix}throttle:login:\\{[A-Za-z0-9_-]{22}\\}$`));
    const all = await redisKeys(redis, `${redis.keyPrefix}*`);
    expect(all?.join(" ")).not.toContain("secret-person");
    expect(all?.join(" ")).not.toContain("198.51.100.9");
    const ttl = (await redis.client?.pttl(key)) ?? -1;
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(policy.forgetAfterMs);
  });
});
