import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customers } from "../../src/platform/db/schema/index.ts";
import { createRedis } from "../../src/platform/redis.ts";
import {
  buildLimitsApp,
  FakeClock,
  hasRedis,
  type LimitsContext,
  owner,
  seedCustomer,
  seedKey,
  xKey,
} from "../helpers/limits.ts";
import { eventually } from "../streaming/helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!hasRedis)("two instances sharing one Redis", () => {
  let a: LimitsContext;
  let b: LimitsContext;
  const clock = new FakeClock();
  beforeAll(async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    a = await buildLimitsApp({ redisKeyPrefix: prefix, clock });
    b = await buildLimitsApp({ redisKeyPrefix: prefix, clock, database: a.database });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const hit = (ctx: LimitsContext, key: string) => ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });

  it("enforce one global limit", async () => {
    const c = await seedCustomer(a.database, { tier: "free" }); // 10/min
    const { key } = await seedKey(a.database, c);
    let allowed = 0;
    for (let i = 0; i < 30; i++) {
      const res = await hit(i % 2 === 0 ? a : b, key);
      if (res.statusCode === 200) allowed++;
      else expect(res.statusCode).toBe(429);
    }
    expect(allowed).toBe(10);
  });

  it("a revocation on one is refused on the other within 1 s", async () => {
    const c = await seedCustomer(a.database, { tier: "pro" });
    const { key, id } = await seedKey(a.database, c);
    expect((await hit(b, key)).statusCode).toBe(200); // cached on b
    const started = performance.now();
    const del = await a.app.inject({ method: "DELETE", url: `/v1/api-keys/${id}`, headers: owner(c) });
    expect(del.statusCode).toBe(200);
    let status = 200;
    let code: unknown;
    while (performance.now() - started < 1_000) {
      const res = await hit(b, key);
      status = res.statusCode;
      code = (res.json() as { code?: unknown }).code;
      if (status === 401) break;
      await sleep(20);
    }
    expect(status).toBe(401);
    expect(code).toBe("api_key_revoked");
  });

  it("a scope change on one applies on the other within 1 s", async () => {
    const c = await seedCustomer(a.database, { tier: "pro" });
    const { key, id } = await seedKey(a.database, c);
    expect((await hit(b, key)).statusCode).toBe(200);
    const started = performance.now();
    const res = await a.app.inject({
      method: "PATCH",
      url: `/v1/api-keys/${id}`,
      headers: owner(c),
      payload: { scopes: ["admin"] },
    });
    expect(res.statusCode).toBe(200);
    let status = 200;
    while (performance.now() - started < 1_000 && status === 200) {
      status = (await hit(b, key)).statusCode;
      if (status === 200) await sleep(20);
    }
    expect(status).toBe(403);
  });

  it("a tier change and a rotation end reach the other instance", async () => {
    const c = await seedCustomer(a.database, { tier: "free" });
    const { key, id } = await seedKey(a.database, c);
    expect((await hit(b, key)).headers["ratelimit-policy"]).toContain('"minute";q=10;');
    await a.database.db.update(customers).set({ tier: "pro" }).where(eq(customers.id, c));
    await a.app.platform.limits.customerChanged(c);
    // Over Redis pub/sub (b's cache is fresh for longer than this test: only the message changes it).
    expect(
      await eventually(async () => String((await hit(b, key)).headers["ratelimit-policy"]).includes('"minute";q=100;')),
    ).toBe(true);

    const rot = await a.app.inject({
      method: "POST",
      url: `/v1/api-keys/${id}/rotate`,
      headers: owner(c),
      payload: { grace_seconds: 30 },
    });
    expect(rot.statusCode).toBe(201);
    await sleep(200);
    expect((await hit(b, key)).statusCode).toBe(200);
    clock.advance(30_000);
    expect((await hit(b, key)).statusCode).toBe(401);
  });

  it("reloads the Lua script after SCRIPT FLUSH (EVALSHA falls back to EVAL)", async () => {
    const c = await seedCustomer(a.database, { tier: "pro" });
    const { key } = await seedKey(a.database, c);
    expect((await hit(a, key)).statusCode).toBe(200);
    await a.redis.client?.script("FLUSH");
    const res = await hit(a, key);
    expect(res.statusCode).toBe(200);
    const usage = await a.app.inject({ method: "GET", url: "/v1/usage", headers: xKey(key) });
    expect(usage.json()).toMatchObject({ limiter: "redis", minute: { used: 2 } });
  });
});

function redisServerAvailable(): boolean {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--enable-debug-command",
      "yes",
    ],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    const probe = spawnSync("redis-cli", ["-p", String(port), "ping"], { encoding: "utf8" });
    if (probe.stdout?.trim() === "PONG") return child;
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error("redis-server did not start");
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

// Runs its own single redis-server: nothing to learn from it in the Redis Cluster pass.
const clusterPass = process.env.TEST_REDIS_CLUSTER_NODES !== undefined;
describe.skipIf(!hasRedis || clusterPass || !redisServerAvailable())("Redis stopped mid-test", () => {
  it("serves with the in-process fallback, reports degraded, and returns to Redis when it is back", async () => {
    const port = await freePort();
    let server = await startRedis(port);
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: "own:", commandTimeoutMs: 500 });
    const ctx = await buildLimitsApp({
      redis,
      env: { LIMITS_INSTANCE_COUNT: "2", LIMITS_REDIS_RETRY_MS: "100", LIMITS_REDIS_TIMEOUT_MS: "50" },
    });
    try {
      for (let i = 0; i < 50 && redis.client?.status !== "ready"; i++) await sleep(50);
      const c = await seedCustomer(ctx.database, { tier: "free" }); // 10/min; 5/min per instance in fallback
      const { key } = await seedKey(ctx.database, c);
      const hit = () => ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });
      const usage = async () =>
        (await ctx.app.inject({ method: "GET", url: "/v1/usage", headers: xKey(key) })).json() as {
          limiter: string;
          month: { used: number };
        };
      const health = async () => (await ctx.app.inject({ method: "GET", url: "/health" })).json();

      for (let i = 0; i < 2; i++) expect((await hit()).statusCode).toBe(200);
      expect((await usage()).limiter).toBe("redis");

      // Slower than the timeout: DEBUG SLEEP blocks the server; requests fall back at once.
      const sleeper = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: "x:", commandTimeoutMs: 5_000 });
      for (let i = 0; i < 50 && sleeper.client?.status !== "ready"; i++) await sleep(20);
      // 1.5 s, and the request 200 ms in: on a loaded machine the DEBUG command may take a while to
      // reach the server, and a request that gets there first is served by Redis, not slowly.
      const blocked = sleeper.client?.call("DEBUG", "SLEEP", "1.5");
      await sleep(200);
      const slow = await hit();
      expect(slow.statusCode).toBe(200);
      await blocked;
      await sleeper.close();
      expect((await health()).checks.rate_limiter.status).toBe("degraded");

      await stopRedis(server);
      // Still served, by the fallback with limits / 2: 5 per minute, of which 1 was spent while slow.
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await hit()).statusCode);
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429, 429, 429]);
      const h = await health();
      expect(h.status).toBe("degraded");
      expect(h.checks.rate_limiter.status).toBe("degraded");
      const metrics = (await ctx.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/vla_rate_limit_redis_failures_total\{reason="(timeout|error|disconnected)"\} [1-9]/);
      expect(metrics).toContain('vla_rate_limit_decisions_total{outcome="allowed",limiter="fallback"} 5');

      server = await startRedis(port); // empty: Redis lost everything
      let back = false;
      for (let i = 0; i < 300 && !back; i++) {
        await sleep(50);
        back = (await usage()).limiter === "redis";
      }
      expect(back).toBe(true);
      expect((await health()).checks.rate_limiter.status).toBe("ok");
      // The month was seeded from the durable count, not reset: 2 + 1 + 4 requests so far.
      expect((await usage()).month.used).toBe(7);
      // Limits apply again, shared ones: a fresh minute bucket of 10.
      ctx.clock.advance(60_000);
      const after: number[] = [];
      for (let i = 0; i < 11; i++) after.push((await hit()).statusCode);
      expect(after.filter((s) => s === 200)).toHaveLength(10);
      expect(after[10]).toBe(429);
    } finally {
      await ctx.close();
      await redis.close();
      await stopRedis(server);
    }
  }, 60_000);
});
