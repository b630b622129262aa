import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { RedisEstopRegistry } from "../../src/modules/safety/estop.ts";
import { RedisRobotStateStore } from "../../src/modules/safety/robot-state-store.ts";
import { createRedis } from "../../src/platform/redis.ts";
import { clearRedisPrefix, testRedis } from "../helpers/app.ts";

const hasRedis = process.env.TEST_REDIS_URL !== undefined;
const A = [0.01, 0.02, 0, 0, 0, 0.1, 1];

describe.skipIf(!hasRedis)("Redis safety stores", () => {
  const redis = testRedis();
  const other = testRedis(redis.keyPrefix); // a second instance sharing the prefix
  afterAll(async () => {
    await clearRedisPrefix(redis);
    await redis.close();
    await other.close();
  });
  const ready = async () => {
    for (const h of [redis, other]) {
      for (let i = 0; i < 100 && h.client?.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 20));
      expect(h.status()).toBe("ok");
    }
  };

  it("previous action: shared between instances, with a hash-tagged key and a TTL", async () => {
    await ready();
    let t = 5_000_000;
    const a = new RedisRobotStateStore(redis, { now: () => t });
    const b = new RedisRobotStateStore(other, { now: () => t });
    await a.set("cust-1", "robot-1", A, 5);
    expect(await b.get("cust-1", "robot-1", 5)).toEqual(A);
    expect(await b.get("cust-2", "robot-1", 5)).toBeUndefined();
    const key = a.key("cust-1", "robot-1");
    expect(key).toBe(`${redis.keyPrefix}safety:prev:{cust-1}:robot-1`);
    const ttl = await redis.client?.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600);
    t += 600; // three periods at 5 Hz: stale even if the key still exists
    expect(await b.get("cust-1", "robot-1", 5)).toBeUndefined();
    await a.delete("cust-1", "robot-1");
    expect(await redis.client?.exists(key)).toBe(0);
  });

  it("emergency stop: stop on one instance, refused on the other, cleared on the other", async () => {
    await ready();
    const a = new RedisEstopRegistry(redis);
    const b = new RedisEstopRegistry(other);
    await a.stop("cust-1", "robot-9", { at: "2026-11-26T22:00:00Z", reason: "collision", inferenceId: "inf-1" });
    expect(await b.check("cust-1", "robot-9")).toEqual({
      at: "2026-11-26T22:00:00Z",
      reason: "collision",
      inferenceId: "inf-1",
    });
    expect(await b.check("cust-2", "robot-9")).toBeUndefined();
    expect([...(await b.list("cust-1")).keys()]).toEqual(["robot-9"]);
    expect(await b.clear("cust-1", "robot-9")).toBe(true);
    expect(await a.check("cust-1", "robot-9")).toBeUndefined(); // Redis is authoritative while reachable
    expect(await redis.client?.type(a.key("cust-1"))).toBe("none");
  });

  it("every customer's stops are listed (on a Redis Cluster: from every master)", async () => {
    await ready();
    const a = new RedisEstopRegistry(redis);
    const b = new RedisEstopRegistry(other);
    // 24 customers: their hash tags spread over all three masters of the CI cluster.
    const customers = Array.from({ length: 24 }, (_, i) => `list-${i}`);
    for (const c of customers) await a.stop(c, "arm", { at: "2026-12-06T05:00:00Z", reason: "test" });
    const listed = await b.listAll(1_000);
    expect(listed.map((s) => s.customerId).sort()).toEqual([...customers].sort());
    for (const c of customers) await b.clear(c, "arm");
    expect(await b.listAll(1_000)).toEqual([]);
  });
});

describe("fallback to in-process when Redis is absent or down", () => {
  const prefix = `t:${randomBytes(4).toString("hex")}:`;
  const none = createRedis({ url: undefined, keyPrefix: prefix, commandTimeoutMs: 100 });
  // Port 1 on localhost: nothing listens, the client never becomes ready.
  const down = createRedis({ url: "redis://127.0.0.1:1", keyPrefix: prefix, commandTimeoutMs: 100 });
  afterAll(async () => {
    await down.close();
  });
  for (const [name, handle] of [
    ["absent", none],
    ["down", down],
  ] as const) {
    it(`${name}: previous action and stops still work in process`, async () => {
      const s = new RedisRobotStateStore(handle);
      await s.set("c", "r", A, 5);
      expect(await s.get("c", "r", 5)).toEqual(A);
      const e = new RedisEstopRegistry(handle);
      await e.stop("c", "r", { at: "now", reason: "test" });
      expect((await e.check("c", "r"))?.reason).toBe("test");
      expect(await e.clear("c", "r")).toBe(true);
      expect(await e.check("c", "r")).toBeUndefined();
    });
  }
});
