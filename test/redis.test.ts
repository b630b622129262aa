import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { isolatedDatabase, testConfig, usingRealServices } from "./helpers/app.ts";

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("Redis is optional and never fatal", () => {
  it("serves with Redis unreachable and reports it as degraded", async () => {
    const port = await closedPort();
    const config = testConfig({ REDIS_URL: `redis://127.0.0.1:${port}` });
    const { database, drop } = await isolatedDatabase();
    const app = await buildApp(config, { database, migrate: false });
    try {
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
