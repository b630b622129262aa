/**
 * The inference path's own cost, and /act throughput.
 *
 *   npx node bench/inference.bench.ts            (BENCH_SECONDS per measurement, default 6)
 *
 * A child process serves the real app on 127.0.0.1 (embedded PGlite, in-process limiter, the
 * embedded registry: mock-openvla-7b at 0 ms model latency) plus a probe route `/bench/decode`
 * registered through buildApp's `plugins` option that only base64-decodes the same JSON body
 * and decodes the 224x224 JPEG as the engine does (prepareImage: decode threads for small
 * JPEGs, sharp otherwise). The customer has huge limits (enterprise + overrides).
 * The parent measures, in one run:
 *   1. saturation throughput (autocannon, 16 connections) of POST /v1/inference vs the probe,
 *      order probe, inference, inference, probe so load drifts hit both alike -> ratio;
 *   2. an open-loop 200 requests/s on POST /v1/inference: the median of total_ms - model_ms as
 *      reported in each answer (server-side: auth, limit, parsing, decode, queue, codec, response),
 *      and the client-side p50/p99;
 *   3. POST /act with a raw json_numpy 224x224x3 uint8 array: req/s and p50/p99 (autocannon).
 * Bounded: fixed durations, loopback only; the child is stopped at the end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import autocannon from "autocannon";
import sharp from "sharp";
import { buildApp } from "../src/app.ts";
import { DEFAULT_IMAGE_LIMITS, prepareImage } from "../src/modules/inference/images.ts";
import { createJpegDecoder } from "../src/modules/inference/jpeg-pool.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import type { ModuleOptions } from "../src/platform/module.ts";
import { benchConfig, seedUnlimitedKey, serveForBench, writeMockRegistry } from "./lib/server.ts";

/**
 * Optional PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/infer_bench, an empty database you
 * drop afterwards). Without it the app uses in-memory PGlite, which runs the batched log INSERTs
 * on the event loop: they then show up as latency tails PostgreSQL would not cause.
 */
const DATABASE_URL = process.env.BENCH_DATABASE_URL;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = 16;
const FIXED_RATE = 200;
/**
 * The mock's batching window. The embedded registry uses 2 ms (a lone request waits up to 2 ms
 * for company); the overhead target is about the path, so the default here is 0 (dispatch at once).
 */
const MAX_WAIT_MS = Number(process.env.BENCH_MOCK_MAX_WAIT_MS ?? 0);

/** The original bench frame: a high-frequency pattern, close to noise for a JPEG encoder (38 KB at q90). */
function frame(): Buffer {
  const raw = Buffer.alloc(224 * 224 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 9)) & 255;
  return raw;
}

/**
 * A camera-like 224x224 frame (what a robot's wrist or scene camera sends): a lit wall and a
 * wooden table in smooth gradients, three coloured blocks with shading, the gripper as a
 * grey disc, and +-3 levels of sensor noise. About 6 KB as a q90 JPEG.
 */
function cameraFrame(): Buffer {
  const W = 224;
  const raw = Buffer.alloc(W * W * 3);
  let seed = 20261127;
  const noise = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed / 4294967296 - 0.5) * 6;
  };
  const blocks: [number, number, number, number, [number, number, number]][] = [
    [60, 120, 30, 30, [200, 40, 40]],
    [130, 140, 26, 40, [40, 160, 60]],
    [90, 170, 40, 18, [50, 70, 200]],
  ];
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++) {
      let rgb: [number, number, number];
      if (y < 100) rgb = [150 + y * 0.4, 160 + y * 0.3, 175 + y * 0.2];
      else {
        const t = (y - 100) / 124;
        rgb = [120 + 60 * t + 10 * Math.sin(x / 9), 90 + 40 * t, 60 + 20 * t];
      }
      for (const [bx, by, bw, bh, c] of blocks) {
        if (x >= bx && x < bx + bw && y >= by && y < by + bh) {
          const shade = 0.8 + 0.2 * ((x - bx) / bw);
          rgb = [c[0] * shade, c[1] * shade, c[2] * shade];
        }
      }
      if ((x - 170) ** 2 + (y - 60) ** 2 < 400) rgb = [90, 90, 95];
      const o = (y * W + x) * 3;
      for (let c = 0; c < 3; c++) raw[o + c] = Math.max(0, Math.min(255, Math.round(rgb[c] as number) + noise()));
    }
  return raw;
}

// ---------------------------------------------------------------- server (child)

async function serve(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-infer-"));
  const registryFile = writeMockRegistry(dataDir, { batching: { max_batch_size: 16, max_wait_ms: MAX_WAIT_MS } });
  const config = benchConfig(dataDir, { MODELS_CONFIG: registryFile });
  const database = await createDatabase(DATABASE_URL === undefined ? {} : { url: DATABASE_URL, poolMax: 5 });
  // The probe decodes exactly as the engine does (small JPEGs on the decode threads, the rest in
  // sharp), with its own threads of the same count.
  const probeDecoder = createJpegDecoder(config.models.jpegDecodeThreads);
  const spec = { width: 224, height: 224, strategy: "resize-naive" as const };
  const probe: FastifyPluginAsyncTypebox<ModuleOptions> = async (app) => {
    app.addHook("onClose", () => probeDecoder.close());
    app.post(
      "/bench/decode",
      { bodyLimit: config.http.inferenceBodyLimitBytes, schema: { hide: true, tags: ["meta"], summary: "bench" } },
      async (request) => {
        const body = request.body as { image: string };
        const bytes = Buffer.from(body.image, "base64");
        const out = await prepareImage({ bytes }, spec, DEFAULT_IMAGE_LIMITS, probeDecoder);
        return { ok: true, width: out.width };
      },
    );
  };
  const app = await buildApp(config, { database, migrate: true, plugins: [probe] });
  const { key } = await seedUnlimitedKey(database);
  await serveForBench(app, database, key);
}

// ---------------------------------------------------------------- load (parent)

interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}

function stats(values: readonly number[]): Stats {
  const x = Float64Array.from(values).sort();
  const at = (p: number) =>
    x.length === 0 ? Number.NaN : (x[Math.min(x.length - 1, Math.floor((p / 100) * x.length))] as number);
  return { n: x.length, p50: at(50), p99: at(99) };
}

async function saturate(port: number, route: string, headers: Record<string, string>, body: string) {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}${route}`,
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    connections: CONNECTIONS,
    duration: SECONDS,
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

/** Open loop: `rate` POSTs per second for `seconds`; returns client latencies and answers' timing blocks. */
async function fixedRate(port: number, headers: Record<string, string>, body: string, rate: number, seconds: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const client: number[] = [];
  const added: number[] = [];
  const preprocess: number[] = [];
  const queue: number[] = [];
  let errors = 0;
  const total = rate * seconds;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
      for (; sent < due; sent++) {
        const t0 = performance.now();
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            path: "/v1/inference",
            method: "POST",
            agent,
            headers: { "content-type": "application/json", ...headers },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              if (res.statusCode === 200) {
                client.push(performance.now() - t0);
                const timing = (
                  JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
                    timing: { total_ms: number; model_ms: number; preprocess_ms: number; queue_ms: number };
                  }
                ).timing;
                added.push(timing.total_ms - timing.model_ms);
                preprocess.push(timing.preprocess_ms);
                queue.push(timing.queue_ms);
              } else errors++;
              if (++done === total) resolve();
            });
          },
        );
        req.on("error", () => {
          errors++;
          if (++done === total) resolve();
        });
        req.end(body);
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  agent.destroy();
  return { client: stats(client), added: stats(added), preprocess: stats(preprocess), queue: stats(queue), errors };
}

async function main(): Promise<void> {
  // Diagnosis: BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" for the server only.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, new URL(import.meta.url).pathname, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      rl.on("line", (l) => {
        if (l.startsWith("READY ")) resolve(JSON.parse(l.slice(6)));
      });
      child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
    });
    const { port, key } = ready;
    const auth = { "x-api-key": key };
    const raw = frame();
    const jpeg = await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const restBody = JSON.stringify({
      image: jpeg.toString("base64"),
      instruction: "pick up the red block",
      robot_id: "bench-arm",
      unnorm_key: "bridge_orig",
    });
    const cameraJpeg = await sharp(cameraFrame(), { raw: { width: 224, height: 224, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const cameraBody = JSON.stringify({
      image: cameraJpeg.toString("base64"),
      instruction: "pick up the red block",
      robot_id: "bench-arm",
      unnorm_key: "bridge_orig",
    });
    const actBody = JSON.stringify({
      image: { __numpy__: raw.toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
      instruction: "pick up the red block",
      unnorm_key: "bridge_orig",
    });
    // Warm-up: JIT, sharp thread pool, key cache.
    await saturate(port, "/v1/inference", auth, restBody);
    await saturate(port, "/bench/decode", {}, restBody);

    const p1 = await saturate(port, "/bench/decode", {}, restBody);
    const i1 = await saturate(port, "/v1/inference", auth, restBody);
    const i2 = await saturate(port, "/v1/inference", auth, restBody);
    const p2 = await saturate(port, "/bench/decode", {}, restBody);
    const probeRps = (p1.rps + p2.rps) / 2;
    const inferRps = (i1.rps + i2.rps) / 2;
    const fixed = await fixedRate(port, auth, restBody, FIXED_RATE, SECONDS * 2);
    const fixedCamera = await fixedRate(port, auth, cameraBody, FIXED_RATE, SECONDS * 2);
    const act = await saturate(port, "/act", auth, actBody);

    const result = {
      when: new Date().toISOString(),
      seconds: SECONDS,
      mock_max_wait_ms: MAX_WAIT_MS,
      database: DATABASE_URL === undefined ? "pglite" : "postgres",
      load_average: os.loadavg().map((l) => Math.round(l * 100) / 100),
      connections: CONNECTIONS,
      throughput: {
        probe_rps: Math.round(probeRps),
        inference_rps: Math.round(inferRps),
        ratio: Math.round((inferRps / probeRps) * 1000) / 1000,
        non2xx: i1.non2xx + i2.non2xx + p1.non2xx + p2.non2xx,
      },
      fixed_rate: {
        rate: FIXED_RATE,
        requests: fixed.added.n,
        errors: fixed.errors,
        added_ms_p50: Math.round(fixed.added.p50 * 1000) / 1000,
        added_ms_p99: Math.round(fixed.added.p99 * 1000) / 1000,
        preprocess_ms_p50: Math.round(fixed.preprocess.p50 * 1000) / 1000,
        queue_ms_p50: Math.round(fixed.queue.p50 * 1000) / 1000,
        client_ms_p50: Math.round(fixed.client.p50 * 100) / 100,
        client_ms_p99: Math.round(fixed.client.p99 * 100) / 100,
      },
      fixed_rate_camera: {
        jpeg_bytes: cameraJpeg.byteLength,
        requests: fixedCamera.added.n,
        errors: fixedCamera.errors,
        added_ms_p50: Math.round(fixedCamera.added.p50 * 1000) / 1000,
        added_ms_p99: Math.round(fixedCamera.added.p99 * 1000) / 1000,
        preprocess_ms_p50: Math.round(fixedCamera.preprocess.p50 * 1000) / 1000,
        queue_ms_p50: Math.round(fixedCamera.queue.p50 * 1000) / 1000,
        client_ms_p50: Math.round(fixedCamera.client.p50 * 100) / 100,
        client_ms_p99: Math.round(fixedCamera.client.p99 * 100) / 100,
      },
      act: { rps: Math.round(act.rps), p50_ms: act.p50, p99_ms: act.p99, non2xx: act.non2xx, errors: act.errors },
    };
    const out = path.join(path.dirname(new URL(import.meta.url).pathname), "results");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "inference-latest.json"), `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(
      `\n| measure | value | target |\n|---|---|---|\n` +
        `| /v1/inference req/s (saturation, ${CONNECTIONS} conn) | ${result.throughput.inference_rps} | |\n` +
        `| decode-only probe req/s | ${result.throughput.probe_rps} | |\n` +
        `| ratio | ${(result.throughput.ratio * 100).toFixed(1)}% | >= 60% |\n` +
        `| added latency p50 at ${FIXED_RATE} req/s (total - model), noise-like JPEG (${jpeg.byteLength} B) | ${result.fixed_rate.added_ms_p50} ms (preprocess ${result.fixed_rate.preprocess_ms_p50}) | <= 3 ms |\n` +
        `| added latency p50 at ${FIXED_RATE} req/s (total - model), camera-like JPEG (${cameraJpeg.byteLength} B) | ${result.fixed_rate_camera.added_ms_p50} ms (preprocess ${result.fixed_rate_camera.preprocess_ms_p50}) | <= 3 ms |\n` +
        `| client latency p50 / p99 at ${FIXED_RATE} req/s | ${result.fixed_rate.client_ms_p50} / ${result.fixed_rate.client_ms_p99} ms | |\n` +
        `| /act req/s, p50 / p99 | ${result.act.rps}, ${result.act.p50_ms} / ${result.act.p99_ms} ms | |\n`,
    );
  } finally {
    child.kill("SIGTERM");
  }
}

if (process.argv.includes("--serve")) await serve();
else await main();
