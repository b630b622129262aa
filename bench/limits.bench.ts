/**
 * Overhead of API-key auth + rate limiting, in one run, against Redis on loopback.
 *
 *   npx node bench/limits.bench.ts            (REDIS_URL defaults to redis://127.0.0.1:6379)
 *
 * A child process serves two routes on 127.0.0.1: `/bench/open` (no auth) and
 * `/bench/protected` (the same handler behind `platform.auth.require` + `platform.limits.meter`,
 * for a customer with huge limits, so every request is verified, checked and counted in Redis
 * but allowed). The parent measures:
 *   1. latency at a fixed 1,000 requests/s, the routes alternating in 1 s slices so drifts in
 *      machine load hit both alike; client-side (process.hrtime; autocannon
 *      rounds latency to whole milliseconds, too coarse here) and server-side
 *      (onRequest -> onResponse, free of client scheduling noise);
 *   2. throughput at saturation with autocannon: at 16, 32, 64 and 128 connections, in two
 *      rounds (open then protected, then protected then open, at each concurrency). A route's
 *      saturation throughput is its peak over these concurrencies, and the target compares the
 *      two peaks. The open route never waits, so it is flat across them; the protected route
 *      waits for a Redis round trip per event-loop turn, so it needs more requests in flight to
 *      keep the server busy, and more of them then share each round trip (the requests per
 *      Redis call are reported beside each row).
 * Bounded: fixed durations, loopback only; the child is stopped at the end. Results go to
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
import { eq } from "drizzle-orm";
import { Redis } from "ioredis";
import { Type } from "typebox";
import { buildApp } from "../src/app.ts";
import { calendar } from "../src/modules/rate-limit/calendar.ts";
import { limitKeys } from "../src/modules/rate-limit/redis-limiter.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { customers } from "../src/platform/db/schema/index.ts";
import type { ModuleOptions } from "../src/platform/module.ts";
import { benchConfig, seedUnlimitedKey } from "./lib/server.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/**
 * Optional PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/limits_bench). Without it the
 * server uses in-memory PGlite, which runs queries on the event loop: the periodic batched
 * writes and cache refreshes then show up as latency tails that PostgreSQL would not cause.
 */
const DATABASE_URL = process.env.BENCH_DATABASE_URL;
/** Diagnosis only: BENCH_LIMITER=memory serves the protected route with the in-process limiter. */
const USE_REDIS = process.env.BENCH_LIMITER !== "memory";
const FIXED_RATE = 1_000;
const FIXED_SECONDS = 10;
const SATURATION_S = 5;
const SATURATION_CONNECTIONS = [16, 32, 64, 128] as const;
const OPEN = "/bench/open";
const PROTECTED = "/bench/protected";

// ---------------------------------------------------------------- server (child)

async function serve(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-"));
  const prefix = `bench:${process.pid}:`;
  const config = benchConfig(dataDir, { ...(USE_REDIS ? { REDIS_URL } : {}), REDIS_KEY_PREFIX: prefix });
  const database = await createDatabase(DATABASE_URL === undefined ? {} : { url: DATABASE_URL, poolMax: 5 });
  const Ok = Type.Object({ ok: Type.Boolean() });
  // Server-side time per request (onRequest -> onResponse), free of client scheduling noise.
  const serverMs: Record<string, number[]> = { [OPEN]: [], [PROTECTED]: [] };
  let recording = false;
  const started = new WeakMap<object, bigint>();
  const routes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
    const schema = { hide: true, tags: ["meta"], summary: "bench", response: { 200: Ok } };
    app.addHook("onRequest", async (request) => {
      started.set(request, process.hrtime.bigint());
    });
    app.addHook("onResponse", async (request) => {
      const t0 = started.get(request);
      const list = serverMs[request.routeOptions.url ?? ""];
      if (recording && t0 !== undefined && list !== undefined) list.push(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    app.get(OPEN, { schema }, async () => ({ ok: true }));
    app.get(
      PROTECTED,
      { schema, preHandler: [platform.auth.require({ scopes: ["inference"] }), platform.limits.meter()] },
      async () => ({ ok: true }),
    );
    app.post("/bench/record", { schema: { hide: true, tags: ["meta"], summary: "bench" } }, async () => {
      recording = true;
      for (const l of Object.values(serverMs)) l.length = 0;
      return { ok: true };
    });
    app.get("/bench/stats", { schema: { hide: true, tags: ["meta"], summary: "bench" } }, async () => {
      recording = false;
      return serverMs;
    });
  };
  const app = await buildApp(config, { database, migrate: true, plugins: [routes] });
  const { customerId, key } = await seedUnlimitedKey(database);
  const client = app.platform.redis.client;
  if (USE_REDIS) {
    if (client === null) throw new Error("the benchmark needs Redis");
    for (let i = 0; i < 100 && client.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 50));
    await app.platform.redis.ping(2_000);
  }
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  const port = Number(new URL(address).port);
  process.stdout.write(`READY ${JSON.stringify({ port, key })}\n`);

  const stop = async () => {
    const cal = calendar(Date.now());
    await app.platform.redis.client?.del(...limitKeys(prefix, customerId, cal.day, cal.month));
    await app.close();
    // Cascades to its key and usage rows.
    if (DATABASE_URL !== undefined) await database.db.delete(customers).where(eq(customers.id, customerId));
    await database.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
}

// ---------------------------------------------------------------- load (parent)

interface Target {
  readonly route: string;
  readonly headers: Record<string, string>;
}

interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
}

function stats(values: readonly number[]): Stats {
  const x = Float64Array.from(values).sort();
  const at = (p: number) =>
    x.length === 0 ? Number.NaN : (x[Math.min(x.length - 1, Math.floor((p / 100) * x.length))] as number);
  return { n: x.length, p50: at(50), p90: at(90), p99: at(99) };
}

/** Open-loop load: `rate` requests per second to each target, for `seconds`. Client-side latency in ms. */
async function fixedRate(port: number, targets: readonly Target[], rate: number, seconds: number, agent: http.Agent) {
  const latencies = targets.map(() => [] as number[]);
  let errors = 0;
  let inflight = 0;
  const total = rate * seconds;
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const done = () => {
      inflight--;
      if (sent >= total && inflight === 0) resolve();
    };
    const fire = (i: number) => {
      const target = targets[i] as Target;
      inflight++;
      const t0 = process.hrtime.bigint();
      const req = http.request(
        { host: "127.0.0.1", port, path: target.route, headers: target.headers, agent },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) latencies[i]?.push(Number(process.hrtime.bigint() - t0) / 1e6);
            else errors++;
            done();
          });
        },
      );
      req.on("error", () => {
        errors++;
        done();
      });
      req.end();
    };
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
      while (sent < due) {
        const order = sent % 2 === 0 ? targets.map((_, i) => i) : targets.map((_, i) => targets.length - 1 - i);
        for (const i of order) fire(i);
        sent++;
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  return { latencies, errors };
}

async function saturate(port: number, target: Target, seconds: number, connections = 32) {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${target.route}`,
    headers: target.headers,
    connections,
    duration: seconds,
  });
  return { rps: result.requests.average, total: result.requests.total, non2xx: result.non2xx, errors: result.errors };
}

async function main(): Promise<void> {
  let redis: Redis | null = null;
  // Diagnosis: BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" (or --trace-gc) for the server only.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, new URL(import.meta.url).pathname, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const { port, key } = await new Promise<{ port: number; key: string }>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      rl.on("line", (line) => {
        if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)));
      });
      child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
    const open: Target = { route: OPEN, headers: {} };
    const guarded: Target = { route: PROTECTED, headers: { "x-api-key": key } };

    // The parent's own connection, only to read INFO commandstats around the protected runs.
    redis = USE_REDIS ? new Redis(REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 1 }) : null;
    const limiter = `${USE_REDIS ? `Redis ${REDIS_URL}` : "in-process limiter (BENCH_LIMITER=memory)"}; database ${DATABASE_URL === undefined ? "PGlite in memory" : "PostgreSQL"}`;
    process.stdout.write(`server on 127.0.0.1:${port}; ${limiter}; node ${process.version}\nwarm-up...\n`);
    await saturate(port, open, 2);
    await saturate(port, guarded, 2);

    process.stdout.write(
      `latency at ${FIXED_RATE} req/s, routes alternating in 1 s slices, ${FIXED_SECONDS} s each...\n`,
    );
    await fetch(`http://127.0.0.1:${port}/bench/record`, { method: "POST" });
    // Alternate 1 s slices so slow drifts in machine load hit both routes alike.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
    const run = { latencies: [[], []] as number[][], errors: 0 };
    for (let i = 0; i < FIXED_SECONDS; i++) {
      for (const [j, target] of (i % 2 === 0 ? [0, 1] : [1, 0]).map((k) => [k, k === 0 ? open : guarded] as const)) {
        const slice = await fixedRate(port, [target], FIXED_RATE, 1, agent);
        run.latencies[j]?.push(...(slice.latencies[0] ?? []));
        run.errors += slice.errors;
      }
    }
    agent.destroy();
    const server = (await (await fetch(`http://127.0.0.1:${port}/bench/stats`)).json()) as Record<string, number[]>;
    const clientOpen = stats(run.latencies[0] ?? []);
    const clientProt = stats(run.latencies[1] ?? []);
    const serverOpen = stats(server[OPEN] ?? []);
    const serverProt = stats(server[PROTECTED] ?? []);
    const added = (a: Stats, b: Stats) => ({ p50: b.p50 - a.p50, p99: b.p99 - a.p99 });
    const fixed = {
      rate_per_route: FIXED_RATE,
      seconds: FIXED_SECONDS,
      errors: run.errors,
      client_ms: { open: clientOpen, protected: clientProt, added: added(clientOpen, clientProt) },
      server_ms: { open: serverOpen, protected: serverProt, added: added(serverOpen, serverProt) },
    };

    process.stdout.write(
      `saturation (connections ${SATURATION_CONNECTIONS.join(", ")}; ${SATURATION_S} s per run, two rounds, open and protected alternating)...\n`,
    );
    // Script calls Redis served while the protected route ran: requests per call = batch size.
    const scriptCalls = async (): Promise<number | null> => {
      if (redis === null) return null;
      const m = /cmdstat_evalsha:calls=(\d+)/.exec(await redis.info("commandstats"));
      return m === null ? 0 : Number(m[1]);
    };
    // Two rounds over the concurrencies, open/protected then protected/open, so drifts in machine
    // load over the minute spread over every row rather than landing on one.
    type Run = Awaited<ReturnType<typeof saturate>>;
    const runs = SATURATION_CONNECTIONS.map(() => ({ open: [] as Run[], guarded: [] as Run[], calls: 0 }));
    for (let round = 0; round < 2; round++) {
      for (const [i, connections] of SATURATION_CONNECTIONS.entries()) {
        const at = runs[i] as (typeof runs)[number];
        for (const which of round === 0 ? (["open", "guarded"] as const) : (["guarded", "open"] as const)) {
          if (which === "open") {
            at.open.push(await saturate(port, open, SATURATION_S, connections));
            continue;
          }
          const calls0 = await scriptCalls();
          at.guarded.push(await saturate(port, guarded, SATURATION_S, connections));
          const calls1 = await scriptCalls();
          if (calls0 !== null && calls1 !== null) at.calls += calls1 - calls0;
        }
      }
    }
    const mean = (xs: Run[]) => xs.reduce((a, x) => a + x.rps, 0) / xs.length;
    const levels = SATURATION_CONNECTIONS.map((connections, i) => {
      const at = runs[i] as (typeof runs)[number];
      const all = [...at.open, ...at.guarded];
      const openRps = mean(at.open);
      const guardedRps = mean(at.guarded);
      return {
        connections,
        open_rps: Math.round(openRps),
        protected_rps: Math.round(guardedRps),
        ratio: guardedRps / openRps,
        requests_per_redis_call:
          at.calls === 0 ? null : Math.round((at.guarded.reduce((a, x) => a + x.total, 0) / at.calls) * 10) / 10,
        non2xx: all.reduce((a, x) => a + x.non2xx, 0),
        errors: all.reduce((a, x) => a + x.errors, 0),
      };
    });
    const peakOpen = Math.max(...levels.map((l) => l.open_rps));
    const peakProtected = Math.max(...levels.map((l) => l.protected_rps));
    const saturation = {
      seconds_per_run: SATURATION_S,
      levels,
      open_rps: peakOpen,
      protected_rps: peakProtected,
      ratio: peakProtected / peakOpen,
      non2xx: levels.reduce((a, l) => a + l.non2xx, 0),
      errors: levels.reduce((a, l) => a + l.errors, 0),
    };

    const result = { when: new Date().toISOString(), node: process.version, limiter, fixed, saturation };
    const n = (x: number) => x.toFixed(3).padStart(8);
    const row = (label: string, x: Stats) => `  ${label.padEnd(18)}${n(x.p50)} ${n(x.p90)} ${n(x.p99)}`;
    const addedRow = (label: string, x: { p50: number; p99: number }) =>
      `  ${label.padEnd(18)}${n(x.p50)}          ${n(x.p99)}`;
    process.stdout.write(
      [
        "",
        `at ${FIXED_RATE} req/s per route    p50 ms   p90 ms   p99 ms`,
        row("client open", clientOpen),
        row("client protected", clientProt),
        addedRow("client added", fixed.client_ms.added),
        row("server open", serverOpen),
        row("server protected", serverProt),
        `${addedRow("server added", fixed.server_ms.added)}   (targets: p50 <= 0.5, p99 <= 2)`,
        "saturation    open req/s   protected req/s   ratio   requests per Redis call",
        ...levels.map(
          (l) =>
            `  ${String(l.connections).padEnd(12)}${String(l.open_rps).padStart(10)}${String(l.protected_rps).padStart(18)}${`${(l.ratio * 100).toFixed(1)}%`.padStart(8)}   ${l.requests_per_redis_call ?? "-"}`,
        ),
        `  peak        ${String(saturation.open_rps).padStart(10)}${String(saturation.protected_rps).padStart(18)}${`${(saturation.ratio * 100).toFixed(1)}%`.padStart(8)}   (target >= 70%)`,
        `errors: fixed-rate ${run.errors}, saturation non-2xx ${saturation.non2xx}, socket errors ${saturation.errors}`,
        "",
      ].join("\n"),
    );
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, USE_REDIS ? "limits-latest.json" : "limits-memory-latest.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
  } finally {
    redis?.disconnect();
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
