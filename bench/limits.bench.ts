/**
 * Overhead of API-key auth + rate limiting, in one run, against Redis on loopback.
 *
 *   npx node bench/limits.bench.ts            (REDIS_URL defaults to redis://127.0.0.1:6379)
 *
 * A child process serves two routes on 127.0.0.1: `/bench/open` (no auth) and
 * `/bench/protected` (the same handler behind `platform.auth.require` + `platform.limits.meter`,
 * for a customer with huge limits, so every request is checked and counted but allowed).
 * The parent measures:
 *   1. latency at a fixed 1,000 requests/s (open loop, keep-alive, microsecond timing with
 *      process.hrtime; autocannon rounds latency to whole milliseconds, too coarse here),
 *      alternating the routes in segments so drift affects both alike;
 *   2. throughput at saturation with autocannon.
 * Bounded: fixed durations, loopback only; the child is killed at the end. Results go to
 * stdout and bench/results/limits-latest.json.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import autocannon from "autocannon";
import { Type } from "typebox";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { ApiKeysRepo } from "../src/modules/api-keys/api-keys.repo.ts";
import { generateKey } from "../src/modules/api-keys/key-format.ts";
import type { ModuleOptions } from "../src/modules/index.ts";
import { calendar } from "../src/modules/rate-limit/calendar.ts";
import { limitKeys } from "../src/modules/rate-limit/redis-limiter.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { customers } from "../src/platform/db/schema/index.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const FIXED_RATE = 1_000;
const FIXED_SEGMENT_S = 5;
const FIXED_SEGMENTS = 2; // per route, alternating
const SATURATION_S = 8;
const SATURATION_CONNECTIONS = 32;

// ---------------------------------------------------------------- server (child)

async function serve(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-"));
  const prefix = `bench:${process.pid}:`;
  const config = loadConfig(
    {
      NODE_ENV: "development",
      LOG_LEVEL: "silent",
      DATA_DIR: dataDir,
      REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      MAX_EVENT_LOOP_DELAY_MS: "0",
      BOOTSTRAP_DEMO: "off",
      SECRET_KEY: "bench-secret-key-that-is-long-enough-0123456789",
    },
    { dotenv: false, persistGeneratedSecret: false },
  );
  const database = await createDatabase({});
  const Ok = Type.Object({ ok: Type.Boolean() });
  const routes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
    const schema = { hide: true, tags: ["meta"], summary: "bench", response: { 200: Ok } };
    app.get("/bench/open", { schema }, async () => ({ ok: true }));
    app.get(
      "/bench/protected",
      { schema, preHandler: [platform.auth.require({ scopes: ["inference"] }), platform.limits.meter()] },
      async () => ({ ok: true }),
    );
  };
  const app = await buildApp(config, { database, migrate: true, plugins: [routes] });
  const [customer] = await database.db
    .insert(customers)
    .values({
      name: "bench",
      email: "bench@example.com",
      tier: "enterprise",
      rateLimitPerMinute: 2_000_000_000,
      quotaPerDay: 2_000_000_000,
      quotaPerMonth: 2_000_000_000,
    })
    .returning();
  if (customer === undefined) throw new Error("no customer");
  const key = generateKey();
  await new ApiKeysRepo(database.db).insert({
    customerId: customer.id,
    name: "bench",
    keyHash: key.hash,
    displayPrefix: key.displayPrefix,
    scopes: ["inference"],
    expiresAt: null,
    createdByUserId: null,
  });
  const client = app.platform.redis.client;
  if (client === null) throw new Error("the benchmark needs Redis");
  for (let i = 0; i < 100 && client.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 50));
  await app.platform.redis.ping(2_000);
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  const port = Number(new URL(address).port);
  process.stdout.write(`READY ${JSON.stringify({ port, key: key.key })}\n`);

  const stop = async () => {
    const cal = calendar(Date.now());
    await app.platform.redis.client?.del(...limitKeys(prefix, customer.id, cal.day, cal.month));
    await app.close();
    await database.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
}

// ---------------------------------------------------------------- load (parent)

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Open-loop load at `rate` req/s for `seconds`; returns per-request latency in ms. */
async function fixedRate(port: number, route: string, headers: Record<string, string>, rate: number, seconds: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const latencies: number[] = [];
  let errors = 0;
  let inflight = 0;
  const total = rate * seconds;
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const fire = () => {
      inflight++;
      sent++;
      const t0 = process.hrtime.bigint();
      const req = http.request({ host: "127.0.0.1", port, path: route, headers, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (res.statusCode === 200) latencies.push(ms);
          else errors++;
          inflight--;
          if (sent >= total && inflight === 0) resolve();
        });
      });
      req.on("error", () => {
        errors++;
        inflight--;
        if (sent >= total && inflight === 0) resolve();
      });
      req.end();
    };
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
      while (sent < due) fire();
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  agent.destroy();
  return { latencies, errors, seconds: (performance.now() - started) / 1000 };
}

async function saturate(port: number, route: string, headers: Record<string, string>, seconds: number) {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${route}`,
    headers,
    connections: SATURATION_CONNECTIONS,
    duration: seconds,
  });
  return { rps: result.requests.average, non2xx: result.non2xx, errors: result.errors };
}

async function main(): Promise<void> {
  const child: ChildProcess = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      rl.on("line", (line) => {
        if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)));
      });
      child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
    const { port, key } = ready;
    const open = { route: "/bench/open", headers: {} as Record<string, string> };
    const guarded = { route: "/bench/protected", headers: { "x-api-key": key } };

    process.stdout.write(`server on 127.0.0.1:${port}; Redis ${REDIS_URL}; node ${process.version}\nwarm-up...\n`);
    await saturate(port, open.route, open.headers, 2);
    await saturate(port, guarded.route, guarded.headers, 2);

    process.stdout.write(`latency at ${FIXED_RATE} req/s (${FIXED_SEGMENTS} x ${FIXED_SEGMENT_S} s per route)...\n`);
    const lat = { open: [] as number[], guarded: [] as number[] };
    let errs = 0;
    for (let i = 0; i < FIXED_SEGMENTS; i++) {
      for (const [name, r] of [
        ["open", open],
        ["guarded", guarded],
      ] as const) {
        const res = await fixedRate(port, r.route, r.headers, FIXED_RATE, FIXED_SEGMENT_S);
        lat[name].push(...res.latencies);
        errs += res.errors;
      }
    }
    const sorted = (a: number[]) => Float64Array.from(a).sort();
    const o = sorted(lat.open);
    const g = sorted(lat.guarded);
    const fixed = {
      rate: FIXED_RATE,
      requests: { open: o.length, protected: g.length, errors: errs },
      open_ms: { p50: percentile(o, 50), p90: percentile(o, 90), p99: percentile(o, 99) },
      protected_ms: { p50: percentile(g, 50), p90: percentile(g, 90), p99: percentile(g, 99) },
      added_ms: {
        p50: percentile(g, 50) - percentile(o, 50),
        p99: percentile(g, 99) - percentile(o, 99),
      },
    };

    process.stdout.write(
      `saturation (${SATURATION_CONNECTIONS} connections, ${SATURATION_S} s per run, order A B B A)...\n`,
    );
    const s1 = await saturate(port, open.route, open.headers, SATURATION_S);
    const s2 = await saturate(port, guarded.route, guarded.headers, SATURATION_S);
    const s3 = await saturate(port, guarded.route, guarded.headers, SATURATION_S);
    const s4 = await saturate(port, open.route, open.headers, SATURATION_S);
    const openRps = (s1.rps + s4.rps) / 2;
    const guardedRps = (s2.rps + s3.rps) / 2;
    const saturation = {
      connections: SATURATION_CONNECTIONS,
      open_rps: Math.round(openRps),
      protected_rps: Math.round(guardedRps),
      ratio: guardedRps / openRps,
      non2xx: s1.non2xx + s2.non2xx + s3.non2xx + s4.non2xx,
      errors: s1.errors + s2.errors + s3.errors + s4.errors,
    };

    const result = { when: new Date().toISOString(), node: process.version, redis: REDIS_URL, fixed, saturation };
    const r3 = (n: number) => n.toFixed(3);
    process.stdout.write(
      [
        "",
        `fixed ${FIXED_RATE} req/s   p50 ms   p90 ms   p99 ms`,
        `  open              ${r3(fixed.open_ms.p50)}    ${r3(fixed.open_ms.p90)}    ${r3(fixed.open_ms.p99)}`,
        `  protected         ${r3(fixed.protected_ms.p50)}    ${r3(fixed.protected_ms.p90)}    ${r3(fixed.protected_ms.p99)}`,
        `  added             ${r3(fixed.added_ms.p50)}             ${r3(fixed.added_ms.p99)}   (targets <= 0.5 / <= 2)`,
        `saturation: open ${saturation.open_rps} req/s, protected ${saturation.protected_rps} req/s, ratio ${(saturation.ratio * 100).toFixed(1)}% (target >= 70%)`,
        `errors: fixed ${errs}, saturation non-2xx ${saturation.non2xx}, socket errors ${saturation.errors}`,
        "",
      ].join("\n"),
    );
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "limits-latest.json"), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    child.kill("SIGTERM");
  }
}

if (process.argv.includes("--serve")) {
  serve().catch((e: unknown) => {
    process.stderr.write(`bench server failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
} else {
  main().catch((e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
