/**
 * What model experiments cost the request path (docs/experiments.md).
 *
 *   npm run bench:experiments     (BENCH_SECONDS per round, default 5; BENCH_RATE req/s, default 200)
 *
 * 1. Routing: the runner's path with a running split experiment (robot_id assignment, cached)
 *    vs without any experiments gate, in process, on an engine that answers at once (so nothing
 *    but the runner is measured). Batches of 2,000 calls alternate with / without; the figure is
 *    the median over batches of the per-request time, and the difference between the two. The
 *    routing decision alone (`plan`) is timed the same way.
 * 2. Shadow traffic: the real app in a child process on 127.0.0.1 (embedded PGlite, two mock
 *    models at 0 ms: the served `mock-openvla-7b` and the candidate `mock-candidate`) under
 *    autocannon at a fixed rate (BENCH_RATE, 8 connections) of POST /v1/inference with a 224x224
 *    JPEG. Rounds alternate off, on, on, off, off, on (on = a shadow experiment with sample_rate
 *    0.1 created through the API; off = stopped), all in one run; p50 and p99 per round, and the
 *    shadow counter at the end.
 * Bounded (about 45 s): fixed durations, loopback only; the child is stopped.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import autocannon from "autocannon";
import sharp from "sharp";
import { ApiKeysRepo } from "../src/modules/api-keys/api-keys.repo.ts";
import { generateKey } from "../src/modules/api-keys/key-format.ts";
import type { ExperimentsRepo } from "../src/modules/experiments/experiments.repo.ts";
import { ExperimentsService } from "../src/modules/experiments/experiments.service.ts";
import { ShadowQueue } from "../src/modules/experiments/shadow-queue.ts";
import type { InferenceEngine, InferenceRequest, InferenceResult } from "../src/modules/inference/inference.service.ts";
import { InferenceRunner } from "../src/modules/inference/inference-runner.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT } from "../src/modules/models/registry.ts";
import type { Principal } from "../src/platform/auth.ts";
import type { ExperimentRow } from "../src/platform/db/schema/index.ts";
import { InvalidationBus } from "../src/platform/invalidation.ts";
import type { RedisHandle } from "../src/platform/redis.ts";
import { benchConfig, seedUnlimitedKey } from "./lib/server.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const RATE = Number(process.env.BENCH_RATE ?? 200);
const CONNECTIONS = 8;

// ---------------------------------------------------------------- 1. routing (in process)

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
const us = (ms: number) => Math.round(ms * 1000 * 100) / 100;

async function routing() {
  const customerId = "8f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f";
  const principal: Principal = {
    kind: "api_key",
    customerId,
    userId: null,
    apiKeyId: null,
    scopes: ["inference"],
    isSuperuser: false,
    tier: "enterprise",
  };
  const result = {
    backend: "fake",
    action: [0, 0, 0, 0, 0, 0, 1],
    unnormKey: "k",
    imageSha256: "x",
    image: { format: "jpeg", bytes: 4 },
    timing: { preprocess_ms: 0, queue_ms: 0, model_ms: 0 },
  };
  const engine = {
    defaultModel: "a",
    modelIds: () => ["a", "b"],
    serves: (id: string) => id === "a" || id === "b",
    infer: async (req: InferenceRequest) => ({ ...result, model: req.model ?? "a" }) as unknown as InferenceResult,
  } as unknown as InferenceEngine;
  const row = {
    id: "2d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    customerId,
    mode: "split",
    assignment: "robot_id",
    variants: [
      { name: "control", model: "a", weight: 9 },
      { name: "candidate", model: "b", weight: 1 },
    ],
    startsAt: null,
    endsAt: null,
    stoppedAt: null,
  } as unknown as ExperimentRow;
  const redis = { keyPrefix: "b:", client: null, duplicate: () => null } as unknown as RedisHandle;
  const service = new ExperimentsService({
    repo: { active: async () => [row] } as unknown as ExperimentsRepo,
    engine,
    safety: undefined,
    invalidation: new InvalidationBus(redis),
    cacheMs: 3_600_000,
    now: Date.now,
    sink: { push() {} },
    queue: (run) => new ShadowQueue({ max: 1, concurrency: 1, run, count() {} }),
  });
  await service.plan(principal, "arm-0", true); // loads the cache
  const sink = { push() {} };
  const withGate = new InferenceRunner({ engine, sink, logInstructions: false, experiments: service });
  const without = new InferenceRunner({ engine, sink, logInstructions: false });
  const image = { imageBytes: new Uint8Array(4) };
  const ctx = { principal, source: "rest" as const, elapsedMs: () => 1 };
  const BATCH = 2_000;
  const batch = async (runner: InferenceRunner) => {
    const t0 = performance.now();
    for (let i = 0; i < BATCH; i++) {
      await runner.run(ctx, { instruction: "pick up the red block", robotId: `arm-${i % 500}`, image });
    }
    return (performance.now() - t0) / BATCH;
  };
  const planBatch = () => {
    const t0 = performance.now();
    for (let i = 0; i < BATCH; i++) service.plan(principal, `arm-${i % 500}`, true);
    return (performance.now() - t0) / BATCH;
  };
  for (let i = 0; i < 5; i++) {
    await batch(withGate);
    await batch(without);
    planBatch();
  }
  const on: number[] = [];
  const off: number[] = [];
  const plan: number[] = [];
  for (let i = 0; i < 40; i++) {
    on.push(await batch(withGate));
    off.push(await batch(without));
    plan.push(planBatch());
  }
  return {
    batches: 40,
    batch_size: BATCH,
    run_us_median: { with_experiment: us(median(on)), without: us(median(off)) },
    added_us_median: us(median(on) - median(off)),
    plan_us_median: us(median(plan)),
  };
}

// ---------------------------------------------------------------- 2. shadow (child server)

async function serve(): Promise<void> {
  const { buildApp } = await import("../src/app.ts");
  const { createDatabase } = await import("../src/platform/db/client.ts");
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-experiments-"));
  const mock = EMBEDDED_REGISTRY.models.find((m) => m.id === "mock-openvla-7b");
  if (mock === undefined) throw new Error("no mock-openvla-7b");
  const entry = {
    ...mock,
    dataset_statistics: path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json"),
    batching: { max_batch_size: 16, max_wait_ms: 0 },
  };
  const registry = path.join(dataDir, "models.json");
  writeFileSync(
    registry,
    JSON.stringify({ default_model: "mock-openvla-7b", models: [entry, { ...entry, id: "mock-candidate" }] }),
  );
  const config = benchConfig(dataDir, { MODELS_CONFIG: registry });
  const database = await createDatabase({});
  const app = await buildApp(config, { database, migrate: true });
  const { customerId, key } = await seedUnlimitedKey(database);
  const admin = generateKey();
  await new ApiKeysRepo(database.db).insert({
    customerId,
    name: "bench-admin",
    keyHash: admin.hash,
    displayPrefix: admin.displayPrefix,
    scopes: ["admin"],
    expiresAt: null,
    createdByUserId: null,
  });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  process.stdout.write(`READY ${JSON.stringify({ port: Number(new URL(address).port), key, admin: admin.key })}\n`);
  process.on("SIGTERM", () => {
    void app.close().then(async () => {
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    });
  });
}

async function startServer() {
  const child: ChildProcess = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ready = await new Promise<{ port: number; key: string; admin: string }>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (l) => {
      if (l.startsWith("READY ")) resolve(JSON.parse(l.slice(6)));
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, ...ready };
}

async function shadow() {
  const s = await startServer();
  const base = `http://127.0.0.1:${s.port}`;
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
  const admin = { "x-api-key": s.admin, "content-type": "application/json" };
  let running: string | undefined;
  const setShadow = async (on: boolean) => {
    if (on && running === undefined) {
      const res = await fetch(`${base}/v1/experiments`, {
        method: "POST",
        headers: admin,
        body: JSON.stringify({ name: "bench", mode: "shadow", candidate_model: "mock-candidate", sample_rate: 0.1 }),
      });
      if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
      running = ((await res.json()) as { id: string }).id;
    } else if (!on && running !== undefined) {
      const res = await fetch(`${base}/v1/experiments/${running}/stop`, {
        method: "POST",
        headers: { "x-api-key": s.admin },
      });
      if (res.status !== 200) throw new Error(`stop: ${res.status}`);
      running = undefined;
    }
  };
  const load = async (seconds: number) => {
    const r = await autocannon({
      url: `${base}/v1/inference`,
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": s.key },
      body,
      connections: CONNECTIONS,
      overallRate: RATE,
      duration: seconds,
    });
    return { rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx };
  };
  try {
    await load(3); // warm-up: JIT, decode threads, caches
    const rounds: { mode: "off" | "on"; rps: number; p50: number; p99: number; non2xx: number }[] = [];
    for (const mode of ["off", "on", "on", "off", "off", "on"] as const) {
      await setShadow(mode === "on");
      rounds.push({ mode, ...(await load(SECONDS)) });
    }
    await setShadow(false);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const counter = Object.fromEntries(
      [...metrics.matchAll(/^vla_shadow_requests_total\{outcome="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    );
    const of = (mode: string) => rounds.filter((r) => r.mode === mode);
    const mean = (xs: number[]) => Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 100) / 100;
    return {
      rate: RATE,
      connections: CONNECTIONS,
      seconds_per_round: SECONDS,
      rounds,
      p99_ms_mean: { off: mean(of("off").map((r) => r.p99)), on: mean(of("on").map((r) => r.p99)) },
      p99_ms_range: {
        off: [Math.min(...of("off").map((r) => r.p99)), Math.max(...of("off").map((r) => r.p99))],
        on: [Math.min(...of("on").map((r) => r.p99)), Math.max(...of("on").map((r) => r.p99))],
      },
      p50_ms_mean: { off: mean(of("off").map((r) => r.p50)), on: mean(of("on").map((r) => r.p50)) },
      shadow_requests: counter,
    };
  } finally {
    s.child.kill("SIGTERM");
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const result = {
    when: new Date().toISOString(),
    node: process.version,
    load_average: os.loadavg().map((l) => Math.round(l * 100) / 100),
    routing: await routing(),
    shadow: await shadow(),
    total_s: 0,
  };
  result.total_s = Math.round((Date.now() - started) / 1000);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

if (process.argv[2] === "--serve") await serve();
else await main();
