import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { describe, expect, it } from "vitest";
import { buildTestApp } from "./helpers/app.ts";
import { rawUpgrade } from "./streaming/helpers.ts";

let entered: () => void = () => {};
const slow: FastifyPluginAsyncTypebox = async (app) => {
  app.get("/_probe/slow", async () => {
    entered();
    await sleep(300);
    return { done: true };
  });
};

describe("graceful shutdown", () => {
  it("finishes in-flight requests, runs flush hooks before closing infrastructure, then refuses", async () => {
    const t = await buildTestApp({ plugins: [slow] });
    const order: string[] = [];
    t.app.platform.lifecycle.onFlush("probe-buffer", async () => {
      await t.database.ping(); // the database is still open while flushing
      order.push("flush");
    });
    t.app.platform.lifecycle.onClose("probe-infra", () => {
      order.push("close");
    });
    const address = await t.app.listen({ host: "127.0.0.1", port: 0 });
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const inflight = fetch(`${address}/_probe/slow`).then(async (r) => ({ status: r.status, body: await r.json() }));
    await inHandler; // the request is being served when shutdown begins
    const closing = t.app.close();
    const res = await inflight;
    await closing;
    expect(res).toEqual({ status: 200, body: { done: true } });
    expect(order).toEqual(["flush", "close"]);
    expect(t.app.platform.lifecycle.isShuttingDown).toBe(true);
    await expect(fetch(`${address}/health/live`)).rejects.toThrow();
    await t.close();
  });

  it("keeps running the remaining hooks when one fails", async () => {
    const t = await buildTestApp();
    const ran: string[] = [];
    t.app.platform.lifecycle.onFlush("broken", () => {
      throw new Error("flush failed");
    });
    t.app.platform.lifecycle.onFlush("after", () => {
      ran.push("after");
    });
    await t.close();
    expect(ran).toEqual(["after"]);
  });
});

describe("requests that arrive while draining", () => {
  it("get 503 shutting_down as problem+json with Retry-After and Connection: close", async () => {
    const t = await buildTestApp();
    try {
      // What preClose does when a shutdown begins; a request on a kept-alive socket then lands here.
      t.app.platform.lifecycle.markShuttingDown();
      const late = await t.app.inject({ method: "GET", url: "/health/live" });
      expect(late.statusCode).toBe(503);
      expect(late.headers["content-type"]).toMatch(/problem\+json/);
      expect(late.json().code).toBe("shutting_down");
      expect(late.headers["retry-after"]).toBe("1");
      expect(late.headers.connection).toBe("close");
    } finally {
      await t.close();
    }
  });
});

describe("load shedding", () => {
  it("answers 503 service_overloaded with Retry-After while the event loop lags", async () => {
    const t = await buildTestApp({ env: { MAX_EVENT_LOOP_DELAY_MS: "20", EVENT_LOOP_SAMPLE_MS: "20" } });
    try {
      let shed: Awaited<ReturnType<typeof t.app.inject>> | undefined;
      for (let attempt = 0; attempt < 20 && shed === undefined; attempt++) {
        const until = Date.now() + 250;
        while (Date.now() < until) {
          // Block the event loop, as a runaway synchronous task would.
        }
        await new Promise((r) => setImmediate(r));
        const res = await t.app.inject({ method: "GET", url: "/health/live" });
        if (res.statusCode === 503) shed = res;
      }
      expect(shed).toBeDefined();
      const res = shed as NonNullable<typeof shed>;
      expect(res.headers["content-type"]).toMatch(/problem\+json/);
      expect(res.json().code).toBe("service_overloaded");
      expect(res.headers["retry-after"]).toBe("1");
      // Once the loop is idle again the service recovers by itself.
      let recovered = false;
      for (let i = 0; i < 50 && !recovered; i++) {
        await sleep(40);
        recovered = (await t.app.inject({ method: "GET", url: "/health/live" })).statusCode === 200;
      }
      expect(recovered).toBe(true);
    } finally {
      await t.close();
    }
  });
});

describe("platform batch writers", () => {
  it("are flushed by graceful shutdown", async () => {
    const t = await buildTestApp();
    const stored: number[] = [];
    const writer = await t.app.platform.batchWriter<{ n: number }>(
      "shutdown_probe",
      {
        async write(rows) {
          stored.push(...rows.map((r) => r.n));
        },
      },
      { flushIntervalMs: 60_000 },
    );
    for (let n = 0; n < 1_200; n++) writer.push({ n });
    await t.close();
    expect(stored).toHaveLength(1_200);
    expect(stored[1_199]).toBe(1_199);
  });
});

describe("the server process (src/server.ts)", () => {
  it("exits 0 on SIGTERM with WebSocket upgrades to plain routes and unknown paths still open", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "vla-shutdown-"));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: "development",
      DATA_DIR: dataDir,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      LOG_PRETTY: "false",
      BOOTSTRAP_DEMO: "off",
      MODELS_WARM_UP: "false",
      // The budget: past it, server.ts gives up and exits 1 ("work unfinished").
      SHUTDOWN_TIMEOUT_MS: "5000",
    };
    delete env.DATABASE_URL;
    delete env.REDIS_URL;
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, "../src/server.ts")], {
      cwd: dataDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      let out = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
          if (m?.[1] !== undefined) resolve(m[1]);
        });
        void exited.then(() => reject(new Error(`server exited before listening: ${out.slice(-2000)}`)));
      });
      const paths = ["/", "/health/live", "/docs", "/no/such/path"];
      // Clients that went away (their server side used to stay in CLOSE_WAIT) ...
      const gone = paths.map((p) => rawUpgrade(url, p));
      for (const c of gone) await c.head;
      for (const c of gone) c.socket.end();
      // ... and clients that stay, never answering the WebSocket closing handshake.
      const staying = paths.map((p) => rawUpgrade(url, p));
      for (const c of staying) await c.head;
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      for (const c of staying) c.socket.destroy();
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
