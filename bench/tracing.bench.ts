/**
 * What OpenTelemetry tracing costs the inference path.
 *
 *   npx node bench/tracing.bench.ts            (BENCH_SECONDS per measurement, default 5)
 *
 * Three child processes serve the real app on 127.0.0.1 (embedded PGlite, the mock model at
 * 0 ms, batching window 0), started together and measured in one run:
 *   - `on`:   OTEL_EXPORTER_OTLP_ENDPOINT set to a sink in this (parent) process that reads
 *             and counts what the exporter posts (OTLP/HTTP JSON, batched every 5 s or 512 spans);
 *   - `off`:  the same code, no endpoint (the default);
 *   - `none`: the code before tracing existed (the parent of the commit that added
 *             src/platform/tracing.ts, or BENCH_BASELINE_REF), extracted with `git archive` into a
 *             temporary folder that borrows this checkout's node_modules.
 * Saturation throughput (autocannon, 16 connections) of POST /v1/inference with a 224x224 JPEG,
 * in the order on, off, none, none, off, on (BENCH_ROUNDS times) so load drift hits each alike;
 * ratios to `none`, and each server's CPU time per request (from /proc), per-run figures alongside (the spread says how much the machine's other load
 * moved them).
 * Bounded: fixed durations, loopback only; the children are stopped and the folder removed.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import autocannon from "autocannon";
import sharp from "sharp";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = 16;
/** Rounds of on, off, none, none, off, on. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const REPO = path.resolve(new URL("..", import.meta.url).pathname);

// ---------------------------------------------------------------- server (child)

/** `--serve <root>`: builds the app from `<root>/src` (this checkout or the baseline copy). */
async function serve(root: string): Promise<void> {
  const lib = (await import(
    pathToFileURL(path.join(root, "bench/lib/server.ts")).href
  )) as typeof import("./lib/server.ts");
  const { buildApp } = (await import(
    pathToFileURL(path.join(root, "src/app.ts")).href
  )) as typeof import("../src/app.ts");
  const { createDatabase } = (await import(
    pathToFileURL(path.join(root, "src/platform/db/client.ts")).href
  )) as typeof import("../src/platform/db/client.ts");
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-tracing-"));
  const registryFile = lib.writeMockRegistry(dataDir, { batching: { max_batch_size: 16, max_wait_ms: 0 } });
  const endpoint = process.env.BENCH_OTLP_ENDPOINT;
  const config = lib.benchConfig(dataDir, {
    MODELS_CONFIG: registryFile,
    ...(endpoint === undefined ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }),
  });
  const database = await createDatabase({});
  const app = await buildApp(config, { database, migrate: true });
  const { key } = await lib.seedUnlimitedKey(database);
  await lib.serveForBench(app, database, key);
}

// ---------------------------------------------------------------- load (parent)

/** An OTLP/HTTP sink: reads each export, counts its spans, answers 200. */
async function startSink() {
  const state = { exports: 0, spans: 0, bytes: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      state.exports += 1;
      state.bytes += text.length;
      state.spans += text.split('"startTimeUnixNano"').length - 1; // once per span (links have none)
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The checkout before tracing, in a temporary folder with this checkout's node_modules. */
function baselineRoot(): { root: string; ref: string } {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: REPO, encoding: "utf8" }).trim();
  const ref =
    process.env.BENCH_BASELINE_REF ??
    `${git("log", "--diff-filter=A", "--format=%H", "--", "src/platform/tracing.ts").split("\n").pop()}^`;
  const root = mkdtempSync(path.join(tmpdir(), "vla-bench-baseline-"));
  const tar = execFileSync("git", ["archive", ref, "src", "bench/lib", "models", "migrations", "package.json"], {
    cwd: REPO,
    maxBuffer: 1024 ** 3,
  });
  execFileSync("tar", ["-x", "-C", root], { input: tar });
  symlinkSync(path.join(REPO, "node_modules"), path.join(root, "node_modules"));
  return { root, ref: git("rev-parse", "--short", ref) };
}

async function start(root: string, env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve", root], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (l) => {
      if (l.startsWith("READY ")) resolve(JSON.parse(l.slice(6)));
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, ...ready };
}

/**
 * CPU time (user + system, ms) the process has used, from /proc (clock ticks of 10 ms): CPU per
 * request is far less moved by the machine's other load than requests per second.
 */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14 and 15)
}

async function saturate(port: number, key: string, body: string) {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/v1/inference`,
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body,
    connections: CONNECTIONS,
    duration: SECONDS,
  });
  return {
    rps: r.requests.average,
    requests: r.requests.total,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
  };
}

async function main(): Promise<void> {
  const sink = await startSink();
  const baseline = baselineRoot();
  const servers: Record<"on" | "off" | "none", Awaited<ReturnType<typeof start>>> = {
    on: await start(REPO, { BENCH_OTLP_ENDPOINT: sink.url }),
    off: await start(REPO, {}),
    none: await start(baseline.root, {}),
  };
  try {
    const raw = Buffer.alloc(224 * 224 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 9)) & 255;
    const jpeg = await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const body = JSON.stringify({
      image: jpeg.toString("base64"),
      instruction: "pick up the red block",
      robot_id: "bench-arm",
      unnorm_key: "bridge_orig",
    });
    // Warm-up: JIT, sharp's pool, key caches, the exporter's first connection.
    let requestsOn = 0;
    for (const [name, s] of Object.entries(servers)) {
      const w = await saturate(s.port, s.key, body);
      if (name === "on") requestsOn += w.requests;
    }
    const runs: Record<string, Awaited<ReturnType<typeof saturate>>[]> = { on: [], off: [], none: [] };
    const cpu = { on: 0, off: 0, none: 0 };
    const served = { on: 0, off: 0, none: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of ["on", "off", "none", "none", "off", "on"] as const) {
        const s = servers[name];
        const cpu0 = cpuMs(s.child.pid as number);
        const r = await saturate(s.port, s.key, body);
        runs[name]?.push(r);
        cpu[name] += cpuMs(s.child.pid as number) - cpu0;
        served[name] += r.requests;
      }
    }
    // Let the last export arrive (the processor's 5 s period).
    await new Promise((r) => setTimeout(r, 6_000));
    const rps = (name: string) => (runs[name] ?? []).reduce((a, r) => a + r.rps, 0) / (2 * ROUNDS);
    requestsOn += (runs.on ?? []).reduce((a, r) => a + r.requests, 0);
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    const result = {
      when: new Date().toISOString(),
      seconds: SECONDS,
      rounds: ROUNDS,
      connections: CONNECTIONS,
      baseline: baseline.ref,
      load_average: os.loadavg().map((l) => Math.round(l * 100) / 100),
      rps: { on: Math.round(rps("on")), off: Math.round(rps("off")), none: Math.round(rps("none")) },
      ratio_to_none: { on: ratio(rps("on"), rps("none")), off: ratio(rps("off"), rps("none")) },
      // The server process's CPU per request served (the most stable figure on a shared machine).
      cpu_ms_per_request: {
        on: Math.round((cpu.on / served.on) * 1000) / 1000,
        off: Math.round((cpu.off / served.off) * 1000) / 1000,
        none: Math.round((cpu.none / served.none) * 1000) / 1000,
      },
      cpu_ratio_to_none: {
        on: ratio(cpu.on / served.on, cpu.none / served.none),
        off: ratio(cpu.off / served.off, cpu.none / served.none),
      },
      rps_runs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((r) => Math.round(r.rps))])),
      p50_ms: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((r) => r.p50)])),
      p99_ms: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((r) => r.p99)])),
      non2xx: Object.values(runs)
        .flat()
        .reduce((a, r) => a + r.non2xx, 0),
      // Everything `on` served (warm-up included) and everything its exporter sent.
      exported: {
        requests_on: requestsOn,
        spans: sink.state.spans,
        spans_per_request: ratio(sink.state.spans, requestsOn),
        exports: sink.state.exports,
        mb: Math.round((sink.state.bytes / 1e6) * 10) / 10,
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const s of Object.values(servers)) s.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    await sink.close();
    rmSync(baseline.root, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--serve") await serve(process.argv[3] as string);
else await main();
