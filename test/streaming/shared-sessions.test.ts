import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConnectionRegistry } from "../../src/modules/streaming/connections.ts";
import { clearRedisPrefix, testRedis } from "../helpers/app.ts";
import { buildLimitsApp, hasRedis, seedCustomer, seedKey } from "../helpers/limits.ts";
import { Client } from "./helpers.ts";

const limits = { free: 1, pro: 10, enterprise: 200 };

async function ready(r: ReturnType<typeof testRedis>) {
  for (let i = 0; i < 100 && r.client?.status !== "ready"; i++) await new Promise((x) => setTimeout(x, 20));
}

describe.skipIf(!hasRedis)("stream session limits shared through Redis", () => {
  it("the tier's limit holds across instances; a release frees the slot everywhere", async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    const ra = testRedis(prefix);
    const rb = testRedis(prefix);
    await Promise.all([ready(ra), ready(rb)]);
    try {
      const a = new ConnectionRegistry(limits, { redis: ra, heartbeatMs: 1_000 });
      const b = new ConnectionRegistry(limits, { redis: rb, heartbeatMs: 1_000 });
      const slot = await a.acquire("cust-1", "free");
      expect(slot).toBeDefined();
      expect(await b.acquire("cust-1", "free")).toBeUndefined();
      // Another customer has its own slots.
      expect(await b.acquire("cust-2", "free")).toBeDefined();
      a.release("cust-1", slot as string);
      let again: string | undefined;
      for (let i = 0; i < 50 && again === undefined; i++) {
        await new Promise((x) => setTimeout(x, 10));
        again = await b.acquire("cust-1", "free");
      }
      expect(again).toBeDefined();
    } finally {
      await clearRedisPrefix(ra);
      await ra.close();
      await rb.close();
    }
  });

  it("concurrent acquires of one customer on one instance count each other", async () => {
    const r = testRedis();
    await ready(r);
    try {
      const reg = new ConnectionRegistry({ ...limits, free: 2 }, { redis: r, heartbeatMs: 1_000 });
      const slots = await Promise.all([reg.acquire("c", "free"), reg.acquire("c", "free"), reg.acquire("c", "free")]);
      expect(slots.filter((x) => x !== undefined)).toHaveLength(2);
      expect(reg.sessionsOf("c")).toBe(2);
      for (const x of slots) if (x !== undefined) reg.release("c", x);
      expect(reg.sessionsOf("c")).toBe(0);
      // The releases reached Redis: two new slots fit again.
      await new Promise((x) => setTimeout(x, 50));
      expect(await reg.acquire("c", "free")).toBeDefined();
      expect(await reg.acquire("c", "free")).toBeDefined();
    } finally {
      await clearRedisPrefix(r);
      await r.close();
    }
  });

  it("slots of an instance that died without releasing expire after three heartbeats; live ones are refreshed", async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    const ra = testRedis(prefix);
    const rb = testRedis(prefix);
    await Promise.all([ready(ra), ready(rb)]);
    try {
      const dead = new ConnectionRegistry(limits, { redis: ra, heartbeatMs: 50 });
      const live = new ConnectionRegistry(limits, { redis: rb, heartbeatMs: 50 });
      expect(await dead.acquire("cust-1", "free")).toBeDefined();
      expect(await live.acquire("cust-2", "free")).toBeDefined();
      // `dead` never refreshes (no heartbeat); `live` does.
      for (let i = 0; i < 6; i++) {
        live.refreshSlots();
        await new Promise((x) => setTimeout(x, 50));
      }
      expect(await live.acquire("cust-1", "free")).toBeDefined();
      expect(await dead.acquire("cust-2", "free")).toBeUndefined();
    } finally {
      await clearRedisPrefix(ra);
      await ra.close();
      await rb.close();
    }
  });

  it("two app instances: the second instance refuses a session the first already counts", async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    const env = { MODELS_WARM_UP: "false", STREAM_MAX_SESSIONS_FREE: "1" };
    const a = await buildLimitsApp({ redisKeyPrefix: prefix, env, realClock: true });
    const b = await buildLimitsApp({ redisKeyPrefix: prefix, env, realClock: true, database: a.database });
    try {
      const customerId = await seedCustomer(a.database, { tier: "free" });
      const { key } = await seedKey(a.database, customerId);
      const url = async (t: typeof a) => {
        await t.app.listen({ port: 0, host: "127.0.0.1" });
        const addr = t.app.server.address();
        if (addr === null || typeof addr === "string") throw new Error("no address");
        return `ws://127.0.0.1:${addr.port}/v1/stream`;
      };
      const [ua, ub] = [await url(a), await url(b)];
      const first = new Client(ua, { "x-api-key": key });
      await first.opened();
      first.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig", instruction: "go" });
      await first.type("started");
      const second = new Client(ub, { "x-api-key": key });
      await second.opened();
      expect(await second.type("error")).toMatchObject({ code: "too_many_sessions" });
      expect((await second.closed).code).toBe(1008);
      first.close();
      await first.closed;
      let code: unknown;
      for (let i = 0; i < 50 && code !== "started"; i++) {
        const third = new Client(ub, { "x-api-key": key });
        await third.opened();
        third.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig", instruction: "go" });
        const m = await third.next((x) => x.type === "started" || x.type === "error");
        code = m.type;
        third.close();
        if (code !== "started") await new Promise((x) => setTimeout(x, 20));
      }
      expect(code).toBe("started");
    } finally {
      await b.close();
      await a.close();
    }
  });
});
