/**
 * What a robot team's stock client costs, one call at a time.
 *
 *   npx node bench/robot-clients.bench.ts
 *
 * Clients (in this process, sequential, loopback) send byte for byte what the stock clients send
 * (layouts in docs/protocols.md):
 *   - OpenVLA `requests.post(url, json={...})` after `json_numpy.patch()`: a new TCP connection per
 *     call (requests.post opens and closes a Session), one write of headers + body, Python's
 *     `json.dumps` separators, a json_numpy uint8 224x224x3 image, `instruction`, `unnorm_key`;
 *     the answer is parsed as json_numpy float64 [7].
 *   - openpi `WebsocketClientPolicy`: one WebSocket (no compression, `Authorization: Api-Key`),
 *     the metadata frame first, then per call one msgpack-numpy observation (two uint8 224x224x3
 *     images, a float64 [8] state as LIBERO's example builds it, a prompt) and its answer unpacked.
 * Servers are child processes (`--serve`), so their CPU time is read from /proc/<pid>/stat
 * (user + system, all threads: event loop, GC helpers, libuv pool), divided by the calls served.
 * Their stdout (the request log, at the default level `info`) goes to /dev/null.
 *
 * Scenarios:
 *   1. embedded defaults (PGlite, in-process limiter, the embedded registry: mock-openvla-7b,
 *      batching window 2 ms): `/act` and openpi;
 *   2. the same on PostgreSQL + Redis (a fresh database per server, dropped at the end; a fresh
 *      Redis key prefix);
 *   3. a team's own GPU server: a deploy.py-protocol stub (another child, `--stub`) called directly
 *      vs through our `/act` with a registry model of kind `openvla-http` pointing at it.
 *
 * A/B in one run: BENCH_BASELINE=<dir> (a checkout of another commit with node_modules; this file
 * need not exist there) starts a second server per scenario from that tree; the two take turns in
 * BENCH_SLICES slices per measurement, order flipped every slice, so load drifts on a shared
 * machine hit both alike.
 *
 * Environment: BENCH_CALLS (per measurement and server, default 2000), BENCH_WARMUP (default 300),
 * BENCH_SLICES (default 4), BENCH_SCENARIOS (default "embedded,postgres,remote"), BENCH_CLIENTS
 * (default "act,openpi"),
 * BENCH_DATABASE_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * REDIS_URL (default redis://127.0.0.1:6379), BENCH_LOG_LEVEL (default info),
 * BENCH_CPU_PROF=<dir> (V8 CPU profiles of the servers, written when they stop).
 * Bounded: fixed call counts, loopback only; every child is stopped at the end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Packr, Unpackr } from "msgpackr";
import pg from "pg";
import WebSocket from "ws";

const HERE = import.meta.dirname;
const ROOT = path.resolve(HERE, "..");
const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300);
const SLICES = Number(process.env.BENCH_SLICES ?? 4);
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? "embedded,postgres,remote").split(",");
/** Which mock-scenario clients run (e.g. only one of them under a profiler). */
const CLIENTS = (process.env.BENCH_CLIENTS ?? "act,openpi").split(",");
const ADMIN_URL = process.env.BENCH_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const BASELINE = process.env.BENCH_BASELINE;

// ---------------------------------------------------------------- server (child)

/** `--serve --root <tree>`: the app of that tree; READY {port, key} on fd 3. */
async function serve(root: string): Promise<void> {
  const { buildApp } = (await import(path.join(root, "src/app.ts"))) as typeof import("../src/app.ts");
  const { createDatabase } = (await import(
    path.join(root, "src/platform/db/client.ts")
  )) as typeof import("../src/platform/db/client.ts");
  const { benchConfig, seedUnlimitedKey } = (await import(
    path.join(root, "bench/lib/server.ts")
  )) as typeof import("./lib/server.ts");
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-robots-"));
  const env: Record<string, string> = { LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "info" };
  const remote = process.env.BENCH_CHILD_REMOTE;
  if (remote !== undefined) {
    const file = path.join(dataDir, "models.json");
    writeFileSync(
      file,
      JSON.stringify({
        default_model: "team-gpu",
        models: [
          {
            id: "team-gpu",
            description: "A team's own OpenVLA deploy.py server (the bench stub).",
            backend: { kind: "openvla-http", endpoints: [remote] },
            action: { dim: 7, chunk: 1 },
            dataset_statistics: path.join(root, "models/mock-openvla-7b/dataset_statistics.json"),
            image: { size: 224, strategy: "resize-naive" },
          },
        ],
      }),
    );
    env.MODELS_CONFIG = file;
  }
  if (process.env.BENCH_CHILD_REDIS !== undefined) {
    env.REDIS_URL = process.env.BENCH_CHILD_REDIS;
    env.REDIS_KEY_PREFIX = `robots-bench-${process.pid}-${Date.now()}:`;
  }
  const config = benchConfig(dataDir, env);
  const url = process.env.BENCH_CHILD_DB;
  const database = await createDatabase(url === undefined ? {} : { url, poolMax: 5 });
  const app = await buildApp(config, { database, migrate: true });
  const { key } = await seedUnlimitedKey(database);
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  writeSync(3, `READY ${JSON.stringify({ port: Number(new URL(address).port), key })}\n`);
  process.on("SIGTERM", () => {
    void app.close().then(async () => {
      await database.close();
      process.exit(0);
    });
  });
}

/** The deploy.py answer for any request: json_numpy float64 [7]. */
const STUB_ACTION = new Float64Array([0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996]);

/**
 * `--stub`: deploy.py's protocol (POST /act, json_numpy in and out), doing what deploy.py does
 * before the model: parse the JSON and decode the image. HTTP/1.1 keep-alive like uvicorn.
 */
async function stub(): Promise<void> {
  const answer = JSON.stringify({
    __numpy__: Buffer.from(STUB_ACTION.buffer).toString("base64"),
    dtype: "<f8",
    shape: [7],
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let ok = false;
      try {
        const doc = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { image: { __numpy__: string } };
        ok = Buffer.from(doc.image.__numpy__, "base64").length === 224 * 224 * 3;
      } catch {}
      const out = ok ? answer : '"error"';
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
      res.end(out);
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  writeSync(3, `READY ${JSON.stringify({ port, key: "" })}\n`);
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

// ---------------------------------------------------------------- parent

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly key: string;
}

async function startChild(name: string, args: string[], env: Record<string, string>): Promise<Child> {
  const prof = process.env.BENCH_CPU_PROF;
  const nodeArgs = prof === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.join(prof, name)];
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, [...nodeArgs, import.meta.filename, ...args], {
    stdio: ["ignore", devNull, "inherit", "pipe"],
    env: { ...process.env, ...env },
  });
  const lines = createInterface({ input: child.stdio[3] as NodeJS.ReadableStream });
  const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
    lines.on("line", (line) => {
      if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)) as { port: number; key: string });
    });
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return { name, child, ...ready };
}

async function stopChild(c: Child): Promise<void> {
  if (c.child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => c.child.once("exit", () => resolve()));
  c.child.kill("SIGTERM");
  const timer = setTimeout(() => c.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** CPU seconds (user + system, all threads) of a process so far; clock ticks are 1/100 s on Linux. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number);
}

/** A 224x224x3 camera-like frame (smooth gradients, a few blocks, noise); the content does not matter to the mock. */
function frame(seed: number): Uint8Array {
  const px = new Uint8Array(224 * 224 * 3);
  let s = seed;
  for (let y = 0; y < 224; y++)
    for (let x = 0; x < 224; x++)
      for (let c = 0; c < 3; c++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const block = x > 60 + seed && x < 100 + seed && y > 120 && y < 160;
        px[(y * 224 + x) * 3 + c] = block ? 200 - c * 70 : (90 + y * 0.5 + x * 0.15 + c * 10 + (s >>> 29)) & 255;
      }
  return px;
}

// ------------------------------------------------ OpenVLA stock client (requests + json_numpy)

/** The bytes `requests.post(f"http://127.0.0.1:{port}/act", json=payload, headers=...)` writes. */
function actRequest(port: number, key: string, image: Uint8Array): Buffer {
  // json.dumps with json_numpy's hook: ", " and ": " separators, keys in insertion order.
  const body = Buffer.from(
    `{"image": {"__numpy__": "${Buffer.from(image).toString("base64")}", "dtype": "|u1", "shape": [224, 224, 3]}, ` +
      `"instruction": "pick up the red block", "unnorm_key": "bridge_orig"}`,
  );
  const headers = [
    "POST /act HTTP/1.1",
    `Host: 127.0.0.1:${port}`,
    "User-Agent: python-requests/2.32.3",
    "Accept-Encoding: gzip, deflate",
    "Accept: */*",
    "Connection: keep-alive",
    ...(key === "" ? [] : [`X-API-Key: ${key}`]),
    `Content-Length: ${body.length}`,
    "Content-Type: application/json",
    "",
    "",
  ].join("\r\n");
  return Buffer.concat([Buffer.from(headers, "latin1"), body]);
}

const CRLF2 = Buffer.from("\r\n\r\n");

/** One call on a new connection (then closed, as requests.post does); returns the status and body. */
function httpOnce(port: number, request: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let need = -1;
    let headerEnd = -1;
    let status = 0;
    sock.on("connect", () => sock.write(request));
    sock.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (headerEnd < 0) {
        headerEnd = buf.indexOf(CRLF2);
        if (headerEnd < 0) return;
        const head = buf.subarray(0, headerEnd).toString("latin1");
        status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (m === null) {
          sock.destroy();
          reject(new Error("no content-length"));
          return;
        }
        need = headerEnd + 4 + Number(m[1]);
      }
      if (buf.length >= need) {
        sock.destroy();
        resolve({ status, body: buf.subarray(headerEnd + 4, need) });
      }
    });
    sock.on("error", reject);
  });
}

/** `.json()` with json_numpy's hook: the float64 [7] action. */
function readAction(body: Buffer): Float64Array {
  const doc = JSON.parse(body.toString("utf8")) as { __numpy__: string; dtype: string; shape: number[] };
  const raw = Buffer.from(doc.__numpy__, "base64");
  if (doc.dtype !== "<f8" || raw.length !== 56) throw new Error(`unexpected answer ${body.toString("utf8")}`);
  return new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + 56));
}

// ------------------------------------------------ openpi stock client (WebsocketClientPolicy)

/** msgpack_numpy's `pack_array`: bin marker keys, raw C-order bytes. */
function ndarray(data: ArrayBufferView, dtype: string, shape: number[]): Map<Buffer, unknown> {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return new Map<Buffer, unknown>([
    [Buffer.from("__ndarray__"), true],
    [Buffer.from("data"), bytes],
    [Buffer.from("dtype"), dtype],
    [Buffer.from("shape"), shape],
  ]);
}

/** `Packer().pack(obs)` of LIBERO's example observation: two images, an 8-dim float64 state, a prompt. */
function openpiObservation(image: Uint8Array, wrist: Uint8Array): Buffer {
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  return packr.pack(
    new Map<string, unknown>([
      ["observation/image", ndarray(image, "|u1", [224, 224, 3])],
      ["observation/wrist_image", ndarray(wrist, "|u1", [224, 224, 3])],
      ["observation/state", ndarray(new Float64Array([0.1, -0.2, 0.3, 0.01, 0.02, -0.03, 0.04, 0.04]), "<f8", [8])],
      ["prompt", "pick up the black bowl and place it on the plate"],
    ]),
  );
}

/** msgpack_numpy's unpackb: maps with bin keys. */
const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false });

interface OpenpiClient {
  infer(obs: Buffer): Promise<void>;
  close(): void;
}

async function openpiConnect(port: number, key: string): Promise<OpenpiClient> {
  // WebsocketClientPolicy(host="ws://127.0.0.1:<port>/v1/openpi?unnorm_key=bridge_orig", api_key=key)
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/openpi?unnorm_key=bridge_orig`, {
    headers: { authorization: `Api-Key ${key}` },
    perMessageDeflate: false,
    maxPayload: 0,
  });
  let waiting: { resolve: (d: Buffer) => void; reject: (e: Error) => void } | undefined;
  const next = () => new Promise<Buffer>((resolve, reject) => (waiting = { resolve, reject }));
  ws.on("message", (data: Buffer, isBinary) => {
    const w = waiting;
    waiting = undefined;
    if (w === undefined) return;
    if (!isBinary) w.reject(new Error(`openpi error: ${data.toString("utf8").slice(0, 300)}`));
    else w.resolve(data);
  });
  ws.on("error", (e) => waiting?.reject(e));
  ws.on("close", () => waiting?.reject(new Error("openpi connection closed")));
  const metadata = next();
  await metadata; // the stock client reads the metadata frame first
  return {
    async infer(obs) {
      const answer = next();
      ws.send(obs);
      const out = unpackr.unpack(await answer) as unknown;
      if (!(out instanceof Map) || !out.has("actions")) throw new Error("openpi: no actions in the answer");
    },
    close: () => ws.close(),
  };
}

// ------------------------------------------------ measurement

class Series {
  readonly latencies: number[] = [];
  cpuSeconds = 0;
  calls = 0;
  errors = 0;
  firstError: string | undefined;
  summary() {
    const sorted = Float64Array.from(this.latencies).sort();
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    return {
      calls: this.calls,
      errors: this.errors,
      p50_ms: round(p50, 3),
      p99_ms: round(p99, 3),
      p99_over_p50: round(p99 / p50, 2),
      server_cpu_ms_per_call: this.cpuSeconds === 0 ? null : round((this.cpuSeconds * 1000) / this.calls, 3),
      ...(this.firstError === undefined ? {} : { first_error: this.firstError }),
    };
  }
}

const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

/** `calls` sequential calls of `one`; latencies and (if `pid`) the server's CPU time go to `into`. */
async function measure(calls: number, one: (i: number) => Promise<boolean>, into?: Series, pid?: number) {
  const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    let ok = false;
    try {
      ok = await one(i);
    } catch (e) {
      if (into !== undefined) into.firstError ??= String(e);
    }
    const ms = performance.now() - t0;
    if (into === undefined) continue;
    into.calls++;
    if (ok) into.latencies.push(ms);
    else into.errors++;
  }
  if (into !== undefined && pid !== undefined) into.cpuSeconds += cpuSeconds(pid) - cpu0;
}

function actCall(port: number, requests: readonly Buffer[]) {
  return async (i: number) => {
    const r = await httpOnce(port, requests[i % requests.length] as Buffer);
    if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.toString("utf8").slice(0, 200)}`);
    readAction(r.body);
    return true;
  };
}

/** Runs `steps` in SLICES slices each, flipping the order every slice. */
async function alternate(steps: readonly ((calls: number) => Promise<void>)[]): Promise<void> {
  const per = Math.ceil(CALLS / SLICES);
  for (let s = 0; s < SLICES; s++) {
    const order = s % 2 === 0 ? steps : [...steps].reverse();
    for (const step of order) await step(per);
  }
}

interface Server extends Child {
  readonly label: string;
}

async function startServers(
  scenario: string,
  env: (label: string) => Promise<Record<string, string>>,
): Promise<Server[]> {
  const trees: [string, string][] = [["current", ROOT]];
  if (BASELINE !== undefined) trees.push(["baseline", path.resolve(BASELINE)]);
  const out: Server[] = [];
  for (const [label, root] of trees) {
    const c = await startChild(`${scenario}-${label}`, ["--serve", "--root", root], await env(label));
    out.push({ ...c, label });
  }
  return out;
}

const frames = [frame(1), frame(7), frame(13), frame(19)];

async function mockScenario(scenario: "embedded" | "postgres") {
  const databases: string[] = [];
  let admin: pg.Client | undefined;
  if (scenario === "postgres") {
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
  }
  let servers: Server[] = [];
  try {
    servers = await startServers(scenario, async (label): Promise<Record<string, string>> => {
      if (admin === undefined) return {};
      const name = `robots_bench_${process.pid}_${label}`;
      await admin.query(`CREATE DATABASE ${name}`);
      databases.push(name);
      const url = new URL(ADMIN_URL);
      url.pathname = `/${name}`;
      return { BENCH_CHILD_DB: url.toString(), BENCH_CHILD_REDIS: REDIS_URL };
    });
    const results: Record<string, unknown> = {};
    const clients = await Promise.all(servers.map((s) => openpiConnect(s.port, s.key)));
    const obs = frames.map((f, i) => openpiObservation(f, frames[(i + 1) % frames.length] as Uint8Array));
    const act = servers.map((s) => ({
      s,
      series: new Series(),
      call: actCall(
        s.port,
        frames.map((f) => actRequest(s.port, s.key, f)),
      ),
    }));
    const openpi = servers.map((s, i) => ({
      s,
      series: new Series(),
      call: async (k: number) => {
        await (clients[i] as OpenpiClient).infer(obs[k % obs.length] as Buffer);
        return true;
      },
    }));
    if (CLIENTS.includes("act")) {
      for (const a of act) await measure(WARMUP, a.call);
      await alternate(act.map((a) => (n) => measure(n, a.call, a.series, a.s.child.pid)));
      for (const a of act) results[`act ${a.s.label}`] = a.series.summary();
    }
    if (CLIENTS.includes("openpi")) {
      for (const o of openpi) await measure(WARMUP, o.call);
      await alternate(openpi.map((o) => (n) => measure(n, o.call, o.series, o.s.child.pid)));
      for (const o of openpi) results[`openpi ${o.s.label}`] = o.series.summary();
    }
    for (const c of clients) c.close();
    return results;
  } finally {
    for (const s of servers) await stopChild(s);
    if (admin !== undefined) {
      for (const d of databases) await admin.query(`DROP DATABASE IF EXISTS ${d} WITH (FORCE)`);
      await admin.end();
    }
  }
}

async function remoteScenario() {
  const stubChild = await startChild("stub", ["--stub"], {});
  const stubUrl = `http://127.0.0.1:${stubChild.port}`;
  const servers = await startServers("remote", async () => ({ BENCH_CHILD_REMOTE: stubUrl }));
  try {
    const direct = {
      series: new Series(),
      call: actCall(
        stubChild.port,
        frames.map((f) => actRequest(stubChild.port, "", f)),
      ),
    };
    const through = servers.map((s) => ({
      s,
      series: new Series(),
      call: actCall(
        s.port,
        frames.map((f) => actRequest(s.port, s.key, f)),
      ),
    }));
    await measure(WARMUP, direct.call);
    for (const t of through) await measure(WARMUP, t.call);
    await alternate([
      (n) => measure(n, direct.call, direct.series, stubChild.child.pid),
      ...through.map((t) => (n: number) => measure(n, t.call, t.series, t.s.child.pid)),
    ]);
    const d = direct.series.summary();
    const results: Record<string, unknown> = { "deploy.py stub direct": d };
    for (const t of through) {
      const r = t.series.summary();
      results[`via /act ${t.s.label}`] = {
        ...r,
        added_p50_ms: round(r.p50_ms - d.p50_ms, 3),
        added_p99_ms: round(r.p99_ms - d.p99_ms, 3),
      };
    }
    return results;
  } finally {
    for (const s of servers) await stopChild(s);
    await stopChild(stubChild);
  }
}

async function main(): Promise<void> {
  const load = () => os.loadavg().map((x) => round(x, 2));
  const head = {
    at: new Date().toISOString(),
    cores: os.cpus().length,
    node: process.version,
    calls: CALLS,
    warmup: WARMUP,
    slices: SLICES,
    baseline: BASELINE ?? null,
    load_before: load(),
  };
  console.log(JSON.stringify(head));
  const results: Record<string, unknown> = {};
  for (const scenario of SCENARIOS) {
    const started = performance.now();
    if (scenario === "embedded" || scenario === "postgres") results[scenario] = await mockScenario(scenario);
    else if (scenario === "remote") results[scenario] = await remoteScenario();
    else throw new Error(`unknown scenario ${scenario}`);
    console.log(`## ${scenario} (${((performance.now() - started) / 1000).toFixed(0)} s, load ${load().join(" ")})`);
    console.log("| client | calls | errors | p50 ms | p99 ms | p99/p50 | server CPU ms per call |");
    console.log("| ------ | ----- | ------ | ------ | ------ | ------- | ---------------------- |");
    for (const [name, r] of Object.entries(results[scenario] as Record<string, ReturnType<Series["summary"]>>)) {
      console.log(
        `| ${name} | ${r.calls} | ${r.errors} | ${r.p50_ms} | ${r.p99_ms} | ${r.p99_over_p50} | ${r.server_cpu_ms_per_call ?? "-"} |`,
      );
    }
  }
  const out = path.join(HERE, "results");
  mkdirSync(out, { recursive: true });
  const doc = { ...head, load_after: load(), results };
  writeFileSync(path.join(out, "robot-clients-latest.json"), `${JSON.stringify(doc, null, 2)}\n`);
}

const rootArg = process.argv.indexOf("--root");
if (process.argv.includes("--serve")) await serve(rootArg > 0 ? (process.argv[rootArg + 1] as string) : ROOT);
else if (process.argv.includes("--stub")) await stub();
else await main();
