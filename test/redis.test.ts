import type { EventEmitter } from "node:events";
import { createServer } from "node:net";
import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { buildApp } from "../src/app.ts";
import { createRedis, type RedisLog } from "../src/platform/redis.ts";
import { isolatedDatabase, testConfig, usingRealServices } from "./helpers/app.ts";
import { type FakeRedis, startFakeRedis } from "./helpers/fake-redis.ts";

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** The next `event` of `emitter` (node's `once` would reject on the error events a retry emits). */
const next = (emitter: EventEmitter, event: string) =>
  new Promise<void>((resolve) => emitter.once(event, () => resolve()));

describe("Redis is optional and never fatal", () => {
  it("serves with Redis unreachable, reports it as degraded and logs it once", async () => {
    const port = await closedPort();
    const config = testConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, LOG_LEVEL: "info" });
    const { database, drop } = await isolatedDatabase();
    const lines: string[] = [];
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const app = await buildApp(config, { database, migrate: false, logStream });
    try {
      const client = app.platform.redis.client;
      if (client === null) throw new Error("expected a Redis client");
      // Two failed retries after the first attempt: still one line.
      await next(client, "reconnecting");
      await next(client, "reconnecting");
      const unreachable = lines.filter((l) => l.includes("redis unreachable"));
      expect(unreachable).toHaveLength(1);
      expect(JSON.parse(unreachable[0] as string)).toMatchObject({
        level: 40,
        redis: `redis://127.0.0.1:${port}`,
        reason: expect.stringContaining("ECONNREFUSED"),
      });
      expect(app.platform.redis.status()).toBe("down");
      const res = await app.inject({ method: "GET", url: "/health" });
      expect(res.statusCode).toBe(200);
      expect(res.json().status).toBe("degraded");
      expect(res.json().checks.redis.status).toBe("down");
      expect((await app.inject({ method: "GET", url: "/health/live" })).statusCode).toBe(200);
    } finally {
      await app.close();
      await drop();
    }
  });

  it.skipIf(!usingRealServices || process.env.TEST_REDIS_URL === undefined)(
    "reports ok against a live Redis",
    async () => {
      const config = testConfig({ REDIS_URL: process.env.TEST_REDIS_URL as string });
      const { database, drop } = await isolatedDatabase();
      const app = await buildApp(config, { database, migrate: false });
      try {
        await app.platform.redis.ping(2_000);
        const res = await app.inject({ method: "GET", url: "/health" });
        expect(res.json().checks.redis.status).toBe("ok");
        expect(res.json().status).toBe("ok");
      } finally {
        await app.close();
        await drop();
      }
    },
  );
});

describe("Redis connection state changes are logged once each", () => {
  it("unreachable, connected, lost, reconnected: one line per change, none per retry or on close", async () => {
    const port = await closedPort();
    const logged: { level: "info" | "warn"; msg: string; obj: Record<string, unknown> }[] = [];
    const log: RedisLog = {
      info: (obj, msg) => logged.push({ level: "info", msg, obj: obj as Record<string, unknown> }),
      warn: (obj, msg) => logged.push({ level: "warn", msg, obj: obj as Record<string, unknown> }),
    };
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: "t:", commandTimeoutMs: 200, log });
    const client = redis.client;
    if (client === null) throw new Error("expected a Redis client");
    const retries = async (n: number) => {
      for (let i = 0; i < n; i++) await next(client, "reconnecting");
    };
    let fake: FakeRedis | undefined;
    try {
      await retries(2);
      expect(logged.map((l) => [l.level, l.msg])).toEqual([
        ["warn", "redis unreachable; using in-process fallbacks and retrying"],
      ]);
      expect(logged[0]?.obj.reason).toMatch(/ECONNREFUSED/);

      fake = await startFakeRedis(port);
      await next(client, "ready");
      expect(redis.status()).toBe("ok");
      expect(logged.map((l) => l.msg).slice(1)).toEqual(["redis reconnected"]);
      expect(logged[1]?.obj.down_ms).toEqual(expect.any(Number));

      await fake.drop();
      fake = undefined;
      await retries(2);
      expect(redis.status()).toBe("down");
      expect(logged.map((l) => [l.level, l.msg]).slice(2)).toEqual([
        ["warn", "redis connection lost; using in-process fallbacks and reconnecting"],
      ]);

      fake = await startFakeRedis(port);
      await next(client, "ready");
      expect(logged.map((l) => [l.level, l.msg]).slice(3)).toEqual([["info", "redis reconnected"]]);
    } finally {
      await redis.close();
      await fake?.drop();
    }
    expect(logged).toHaveLength(4);
    // The URL's credentials never reach these lines.
    for (const l of logged) expect(l.obj.redis).toBe(`redis://127.0.0.1:${port}`);
  });

  it("logs the first connection at info", async () => {
    const fake = await startFakeRedis();
    const infos: string[] = [];
    const redis = createRedis({
      url: `redis://user:pw-secret@127.0.0.1:${fake.port}`,
      keyPrefix: "t:",
      commandTimeoutMs: 200,
      log: { info: (o, m) => infos.push(m + JSON.stringify(o)), warn: (o, m) => infos.push(m + JSON.stringify(o)) },
    });
    try {
      await vi.waitFor(() => expect(redis.status()).toBe("ok"));
      expect(infos).toEqual([`redis connected{"redis":"redis://127.0.0.1:${fake.port}"}`]);
    } finally {
      await redis.close();
      await fake.drop();
    }
  });
});
