/**
 * Real-time streaming capacity.
 *
 *   npx node bench/stream.bench.ts        (BENCH_SECONDS per step, default 10; BENCH_STREAMS="25,50,100,150,200")
 *
 * A child process serves the real app on 127.0.0.1 (embedded PGlite unless BENCH_DATABASE_URL,
 * in-process limiter, mock-openvla-7b at 0 ms model latency, batching window 0 ms). The parent:
 *   1. for each N in BENCH_STREAMS: N concurrent `WS /v1/stream` sessions, each sending one
 *      224x224 JPEG frame (msgpack binary, raw bytes) every 100 ms (10 FPS), start times
 *      staggered over the first 100 ms; frame-to-action latency measured at the client (send
 *      to `action` received), drops counted (`dropped` of any reason, errors, no answer).
 *      A step passes with p99 <= 50 ms and < 1 % frames without an action. The ladder stops
 *      after the first failing step; the answer is the largest passing N.
 *   2. `WS /v1/openpi`: one client, closed loop, a 224x224x3 uint8 observation + prompt:
 *      round trips per second and p50/p99.
 * Bounded: fixed durations, loopback only; the child is stopped at the end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { pack, unpack } from "msgpackr";
import sharp from "sharp";
import WebSocket from "ws";
import { buildApp } from "../src/app.ts";
import { packMsgpackNumpy } from "../src/modules/inference/msgpack-numpy.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { benchConfig, seedUnlimitedKey, serveForBench, writeMockRegistry } from "./lib/server.ts";

const DATABASE_URL = process.env.BENCH_DATABASE_URL;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const STEPS = (process.env.BENCH_STREAMS ?? "25,50,100,150,200,300").split(",").map(Number);
const FPS = 10;
const P99_TARGET_MS = 50;
const DROP_TARGET = 0.01;
/** `jpeg` (default): encoded 224x224 JPEG bytes; `array`: the decoded uint8 224x224x3 pixels (msgpack-numpy, no decode on the server). */
const FRAME = process.env.BENCH_FRAME ?? "jpeg";
let pixels: Uint8Array[] = [];

// ---------------------------------------------------------------- server (child)

async function serve(): Promise<void> {
  // BENCH_SHARP_CONCURRENCY=n: libvips threads per image (sharp's default: the core count).
  if (process.env.BENCH_SHARP_CONCURRENCY !== undefined) sharp.concurrency(Number(process.env.BENCH_SHARP_CONCURRENCY));
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-stream-"));
  const registryFile = writeMockRegistry(dataDir, {
    default_unnorm_key: "bridge_orig",
    batching: { max_batch_size: 32, max_wait_ms: 0 },
  });
  const config = benchConfig(dataDir, { MODELS_CONFIG: registryFile, STREAM_MAX_SESSIONS_ENTERPRISE: "10000" });
  const database = await createDatabase(DATABASE_URL === undefined ? {} : { url: DATABASE_URL, poolMax: 5 });
  const app = await buildApp(config, { database, migrate: true });
  const { key } = await seedUnlimitedKey(database);
  await serveForBench(app, database, key);
}

// ---------------------------------------------------------------- load (parent)

function percentile(values: readonly number[], p: number): number {
  const x = Float64Array.from(values).sort();
  return x.length === 0 ? Number.NaN : (x[Math.min(x.length - 1, Math.ceil((p / 100) * x.length) - 1)] as number);
}

interface StepResult {
  readonly streams: number;
  readonly sent: number;
  readonly actions: number;
  readonly dropped: number;
  readonly p50: number;
  readonly p99: number;
  /** The server's own total_ms (frame received to action sent). */
  readonly serverP50: number;
  readonly serverP99: number;
  /** The server's image intake (decode, checks, hash) per frame, part of the above. */
  readonly preprocessP50: number;
  readonly preprocessP99: number;
  readonly achievedFps: number;
  /** Server process CPU time (all threads) per action over the step, connection setup included. */
  readonly serverCpuMsPerAction: number;
}

/**
 * `scene` (default): a camera-like frame (lit table gradient, a few coloured blocks, sensor
 * noise), about what a robot camera sends. `noise`: a high-frequency pattern, the worst case for
 * JPEG size and decode time.
 */
async function jpegs(n: number, kind = process.env.BENCH_IMAGE ?? "scene"): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let k = 0; k < n; k++) {
    const raw = Buffer.alloc(224 * 224 * 3);
    const blocks = Array.from({ length: 4 }, () => ({
      x: Math.floor(rand() * 180),
      y: Math.floor(rand() * 180),
      s: 20 + Math.floor(rand() * 30),
      c: [rand() * 255, rand() * 255, rand() * 255],
    }));
    for (let y = 0; y < 224; y++) {
      for (let x = 0; x < 224; x++) {
        const i = (y * 224 + x) * 3;
        for (let ch = 0; ch < 3; ch++) {
          let v: number;
          if (kind === "noise") v = (i * (7 + k) + (i >> 9) + ch) & 255;
          else {
            v = 90 + y * 0.5 + x * 0.15 + ch * 10 + k * 3;
            for (const b of blocks) if (x >= b.x && x < b.x + b.s && y >= b.y && y < b.y + b.s) v = b.c[ch] as number;
            v += (rand() - 0.5) * 16;
          }
          raw[i + ch] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
    out.push(
      await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
        .jpeg({ quality: 85 })
        .toBuffer(),
    );
  }
  return out;
}

/** CPU seconds (user + system, all threads: event loop, libuv pool, libvips) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function step(
  port: number,
  key: string,
  streams: number,
  images: readonly Buffer[],
  serverPid: number,
): Promise<StepResult> {
  const cpuBefore = cpuSeconds(serverPid);
  const latencies: number[] = [];
  const serverTotals: number[] = [];
  const serverPreprocess: number[] = [];
  let sent = 0;
  let actions = 0;
  let dropped = 0;
  const sockets: WebSocket[] = [];
  const timers: NodeJS.Timeout[] = [];
  await Promise.all(
    Array.from(
      { length: streams },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, {
            headers: { "x-api-key": key },
            perMessageDeflate: false,
          });
          sockets.push(ws);
          const sentAt = new Map<number, number>();
          ws.on("error", reject);
          ws.on("open", () => {
            ws.send(pack({ type: "start", robot_id: `bench-${i}`, instruction: "pick up the block", target_fps: FPS }));
          });
          ws.on("message", (data: Buffer) => {
            const m = unpack(data) as {
              type: string;
              seq?: number;
              timing?: { total_ms: number; preprocess_ms: number };
            };
            if (m.type === "started") {
              resolve();
              return;
            }
            if (m.seq === undefined) return;
            const t0 = sentAt.get(m.seq);
            sentAt.delete(m.seq);
            if (m.type === "action" && t0 !== undefined) {
              actions++;
              latencies.push(performance.now() - t0);
              if (m.timing !== undefined) {
                serverTotals.push(m.timing.total_ms);
                serverPreprocess.push(m.timing.preprocess_ms);
              }
            } else if (m.type === "dropped" || m.type === "error") dropped++;
          });
          (ws as WebSocket & { sentAt?: Map<number, number> }).sentAt = sentAt;
        }),
    ),
  );
  // Staggered starts over one frame period, then 10 FPS each for SECONDS.
  const stopAt = performance.now() + SECONDS * 1000;
  sockets.forEach((ws, i) => {
    const sentAt = (ws as WebSocket & { sentAt: Map<number, number> }).sentAt;
    let seq = 0;
    const image = images[i % images.length] as Buffer;
    const begin = setTimeout(
      () => {
        const timer = setInterval(() => {
          if (performance.now() >= stopAt) {
            clearInterval(timer);
            return;
          }
          seq++;
          sentAt.set(seq, performance.now());
          sent++;
          ws.send(
            FRAME === "array"
              ? packMsgpackNumpy({
                  type: "frame",
                  seq,
                  image: { data: pixels[i % pixels.length] as Uint8Array, shape: [224, 224, 3] },
                })
              : pack({ type: "frame", seq, image }),
          );
        }, 1000 / FPS);
        timers.push(timer);
      },
      Math.floor((i * 1000) / FPS / streams),
    );
    timers.push(begin);
  });
  await new Promise((r) => setTimeout(r, SECONDS * 1000 + 1000));
  for (const t of timers) clearTimeout(t);
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          ws.once("close", () => resolve());
          ws.send(pack({ type: "stop" }));
          setTimeout(() => {
            ws.terminate();
            resolve();
          }, 3000).unref();
        }),
    ),
  );
  const unanswered = sent - actions - dropped;
  const cpu = cpuSeconds(serverPid) - cpuBefore;
  return {
    serverCpuMsPerAction: actions === 0 ? Number.NaN : (cpu * 1000) / actions,
    streams,
    sent,
    actions,
    dropped: dropped + unanswered,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    serverP50: percentile(serverTotals, 50),
    serverP99: percentile(serverTotals, 99),
    preprocessP50: percentile(serverPreprocess, 50),
    preprocessP99: percentile(serverPreprocess, 99),
    achievedFps: actions / streams / SECONDS,
  };
}

async function openpiRoundTrips(port: number, key: string) {
  const pixels = new Uint8Array(224 * 224 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 13) & 255;
  const obs = packMsgpackNumpy({
    "observation/image": { data: pixels, shape: [224, 224, 3] },
    "observation/state": { data: new Float32Array(8), shape: [8] },
    prompt: "pick up the block",
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/openpi`, {
    headers: { authorization: `Api-Key ${key}` },
    perMessageDeflate: false,
  });
  const latencies: number[] = [];
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    let t0 = 0;
    let end = 0;
    let metadata = false;
    ws.on("error", reject);
    ws.on("message", (_data, isBinary) => {
      if (!isBinary) {
        reject(new Error("openpi error frame"));
        return;
      }
      const now = performance.now();
      if (!metadata) {
        metadata = true;
        end = now + SECONDS * 1000;
      } else {
        count++;
        latencies.push(now - t0);
      }
      if (now >= end) {
        ws.close();
        resolve();
        return;
      }
      t0 = performance.now();
      ws.send(obs);
    });
  });
  return { roundTripsPerSecond: count / SECONDS, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function startServer(): Promise<{ child: ChildProcess; port: number; key: string }> {
  // BENCH_CPU_PROF=<dir>: write a V8 CPU profile of the server process there (open in Chrome DevTools).
  const prof = process.env.BENCH_CPU_PROF;
  const args = prof === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", prof];
  const child = spawn(process.execPath, [...args, import.meta.filename, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env },
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
    lines.on("line", (line) => {
      if (line.startsWith("READY ")) resolve(JSON.parse(line.slice(6)) as { port: number; key: string });
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { child, ...ready };
}

async function main(): Promise<void> {
  const { child, port, key } = await startServer();
  try {
    const images = await jpegs(8);
    pixels = await Promise.all(images.map(async (j) => new Uint8Array(await sharp(j).removeAlpha().raw().toBuffer())));
    console.log(
      `# ${new Date().toISOString()} ${os.cpus().length} cores, Node ${process.version}, load ${os
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(
          " ",
        )}, ${SECONDS}s per step, ${process.env.BENCH_IMAGE ?? "scene"} JPEG ${images[0]?.length} bytes, frames as ${FRAME}`,
    );
    // Warm-up: the first sessions pay for JIT and sharp's first decode.
    await step(port, key, 5, images, child.pid as number);
    let best = 0;
    const steps: (StepResult & { pass: boolean })[] = [];
    console.log(
      "| streams | frames sent | actions | dropped or unanswered | p50 ms | p99 ms | server p50 / p99 ms | image p50 / p99 ms | FPS per stream | server CPU ms per action | pass |",
    );
    console.log(
      "| ------- | ----------- | ------- | --------------------- | ------ | ------ | ------------------- | ------------------ | -------------- | ------------------------ | ---- |",
    );
    for (const n of STEPS) {
      const r = await step(port, key, n, images, child.pid as number);
      const dropRate = r.sent === 0 ? 1 : r.dropped / r.sent;
      const pass = r.p99 <= P99_TARGET_MS && dropRate < DROP_TARGET;
      console.log(
        `| ${n} | ${r.sent} | ${r.actions} | ${r.dropped} (${(dropRate * 100).toFixed(2)} %) | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.serverP50.toFixed(1)} / ${r.serverP99.toFixed(1)} | ${r.preprocessP50.toFixed(1)} / ${r.preprocessP99.toFixed(1)} | ${r.achievedFps.toFixed(2)} | ${r.serverCpuMsPerAction.toFixed(2)} | ${pass ? "yes" : "no"} |`,
      );
      steps.push({ ...r, pass });
      if (!pass) break;
      best = n;
    }
    console.log(`\nlargest passing N: ${best} (p99 <= ${P99_TARGET_MS} ms, < ${DROP_TARGET * 100} % dropped)`);
    const o = await openpiRoundTrips(port, key);
    console.log(
      `openpi, one client, 224x224x3 uint8: ${o.roundTripsPerSecond.toFixed(0)} round trips/s, p50 ${o.p50.toFixed(2)} ms, p99 ${o.p99.toFixed(2)} ms`,
    );
    const out = path.join(import.meta.dirname, "results");
    mkdirSync(out, { recursive: true });
    const result = {
      at: new Date().toISOString(),
      cores: os.cpus().length,
      node: process.version,
      loadavg: os.loadavg(),
      seconds_per_step: SECONDS,
      frame: FRAME,
      database: DATABASE_URL === undefined ? "pglite" : "postgresql",
      steps,
      largest_passing_streams: best,
      openpi: o,
    };
    writeFileSync(path.join(out, "stream-latest.json"), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    child.kill("SIGTERM");
  }
}

if (process.argv.includes("--serve")) await serve();
else await main();
