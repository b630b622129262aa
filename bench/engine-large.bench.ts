/**
 * The batching scheduler on a weight-bound model (issue 23): the model directory written by
 * `npm run make-bench-model` (bench-vla-mlp, ~200 MiB of float32 weights that every forward pass
 * streams from memory), 16 concurrent in-process callers on `InferenceEngine.infer` with uint8
 * 224x224x3 arrays, batching on (max batch 16, max wait 3 ms) vs off (max batch 1), in
 * alternating slices of the same run; once with the ONNX session on the main thread and once
 * with `run_in_worker`. Prints req/s, p50/p99, the on/off ratios and the batch-size histogram
 * (the engine's `vla_model_batch_size` metric).
 *
 *   npm run make-bench-model
 *   npx node bench/engine-large.bench.ts [seconds-per-mode] [--model-dir DIR]   # default 10 s
 *
 * The model directory: --model-dir, else BENCH_MODEL_DIR, else the generator's default
 * (<DATA_DIR or ./data>/bench-models/bench-vla-mlp). BENCH_ROUNDS (default 4) slices per mode.
 */
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { defaultBenchModelDir } from "../scripts/make-bench-model.ts";
import { createEngineMetrics, type EngineMetrics } from "../src/modules/inference/engine-metrics.ts";
import { InferenceEngine } from "../src/modules/inference/inference.service.ts";
import type { NdArray } from "../src/modules/inference/ndarray.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../src/modules/models/registry.ts";

const MODEL = "bench-vla-mlp";
const CALLERS = 16;
const { values, positionals } = parseArgs({ options: { "model-dir": { type: "string" } }, allowPositionals: true });
const seconds = Number(positionals[0] ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const modelDir = path.resolve(values["model-dir"] ?? process.env.BENCH_MODEL_DIR ?? defaultBenchModelDir());
if (!existsSync(path.join(modelDir, "model.onnx"))) {
  console.error(`no model.onnx in ${modelDir}: run \`npm run make-bench-model\` first (or pass --model-dir)`);
  process.exit(1);
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

interface Mode {
  readonly name: string;
  readonly maxBatchSize: number;
  readonly worker: boolean;
}
interface Acc {
  latencies: number[];
  elapsed: number;
}
interface Row {
  mode: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  meanBatch: number;
  /** Batches per batch-size bucket of vla_model_batch_size (upper bound -> count, not cumulative). */
  histogram: string;
}

async function makeEngine(m: Mode): Promise<{ engine: InferenceEngine; metrics: EngineMetrics }> {
  const demo = EMBEDDED_REGISTRY.models.find((d) => d.id === "demo-vla-tiny");
  const registry = parseRegistry(
    {
      models: [
        {
          ...demo,
          id: MODEL,
          description: "bench-vla-mlp (scripts/make-bench-model.ts)",
          backend: { kind: "onnx", model_dir: modelDir, run_in_worker: m.worker },
          batching: { max_batch_size: m.maxBatchSize, max_wait_ms: 3, max_queue: 1024 },
        },
      ],
    },
    PROJECT_ROOT,
  );
  const metrics = createEngineMetrics(new Registry());
  const engine = new InferenceEngine(registry, { metrics });
  await engine.warmUp();
  return { engine, metrics };
}

async function slice(engine: InferenceEngine, inputs: NdArray[], ms: number, acc: Acc): Promise<void> {
  const stopAt = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, c) => {
      let i = c;
      while (performance.now() < stopAt) {
        const t0 = performance.now();
        await engine.infer({
          model: MODEL,
          imageArray: inputs[i % inputs.length] as NdArray,
          instruction: `pick up object ${i % 5}`,
          customerId: `robot-${c}`,
        });
        acc.latencies.push(performance.now() - t0);
        i += CALLERS;
      }
    }),
  );
  acc.elapsed += (performance.now() - started) / 1000;
}

async function histogram(metrics: EngineMetrics): Promise<string> {
  const { values } = await metrics.batchSize.get();
  const buckets = values
    .map((v) => ({ name: v.metricName, le: (v.labels as Record<string, unknown>).le, n: v.value }))
    .filter((v) => v.name === "vla_model_batch_size_bucket" && v.le !== "+Inf")
    .map((v) => ({ le: Number(v.le), n: v.n }))
    .sort((a, b) => a.le - b.le);
  const parts: string[] = [];
  let prev = 0;
  let prevLe = 0;
  for (const b of buckets) {
    const n = b.n - prev;
    if (n > 0) parts.push(`${prevLe + 1 === b.le ? b.le : `${prevLe + 1}-${b.le}`}: ${n}`);
    prev = b.n;
    prevLe = b.le;
  }
  return parts.join(", ");
}

async function compare(modes: readonly Mode[], inputs: NdArray[]): Promise<Row[]> {
  const made = [];
  for (const m of modes) made.push(await makeEngine(m)); // one at a time: each loads ~200 MiB
  for (const { engine } of made)
    await Promise.all(
      inputs.map((imageArray) => engine.infer({ model: MODEL, imageArray, instruction: "warm up", customerId: "w" })),
    );
  // The histogram counts only the measured slices.
  for (const { metrics } of made) metrics.batchSize.reset();
  const accs: Acc[] = modes.map(() => ({ latencies: [], elapsed: 0 }));
  const sliceMs = (seconds * 1000) / ROUNDS;
  for (let round = 0; round < ROUNDS; round++) {
    const order = modes.map((_, k) => k);
    if (round % 2 === 1) order.reverse();
    for (const k of order) await slice(made[k]?.engine as InferenceEngine, inputs, sliceMs, accs[k] as Acc);
  }
  const rows: Row[] = [];
  for (const [k, m] of modes.entries()) {
    const { engine, metrics } = made[k] as { engine: InferenceEngine; metrics: EngineMetrics };
    const acc = accs[k] as Acc;
    const hist = await histogram(metrics);
    const { stats } = engine.describe(MODEL);
    await engine.close();
    acc.latencies.sort((a, b) => a - b);
    rows.push({
      mode: m.name,
      requests: acc.latencies.length,
      rps: acc.latencies.length / acc.elapsed,
      p50: percentile(acc.latencies, 0.5),
      p99: percentile(acc.latencies, 0.99),
      meanBatch: stats.mean_batch_size ?? 1,
      histogram: hist,
    });
  }
  return rows;
}

const inputs: NdArray[] = Array.from({ length: 8 }, (_, s) => {
  const data = new Uint8Array(224 * 224 * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * (s + 3) + (i >> 9)) & 255;
  return { dtype: "|u1", shape: [224, 224, 3], data } as NdArray;
});
const rows = [
  ...(await compare(
    [
      { name: "main thread, batching off (max batch 1)", maxBatchSize: 1, worker: false },
      { name: "main thread, batching on (max batch 16, wait 3 ms)", maxBatchSize: 16, worker: false },
    ],
    inputs,
  )),
  ...(await compare(
    [
      { name: "run_in_worker, batching off", maxBatchSize: 1, worker: true },
      { name: "run_in_worker, batching on", maxBatchSize: 16, worker: true },
    ],
    inputs,
  )),
];
console.log(
  `${MODEL} (${modelDir}), ${CALLERS} concurrent callers, ${seconds} s per mode in ${ROUNDS} slices, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), Node ${process.version}`,
);
console.log("");
console.log(
  "| mode | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | batch-size histogram (batches) |",
);
console.log("|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.mode} | ${r.requests} | ${r.rps.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.meanBatch.toFixed(2)} | ${r.histogram} |`,
  );
const [off, on, woff, won] = rows as [Row, Row, Row, Row];
console.log("");
console.log(
  `main thread: throughput on/off ${(on.rps / off.rps).toFixed(2)}x, p99 on/off ${(on.p99 / off.p99).toFixed(2)}x`,
);
console.log(
  `run_in_worker: throughput on/off ${(won.rps / woff.rps).toFixed(2)}x, p99 on/off ${(won.p99 / woff.p99).toFixed(2)}x`,
);
console.log(
  `batching on, worker/main: throughput ${(won.rps / on.rps).toFixed(2)}x, p99 ${(won.p99 / on.p99).toFixed(2)}x`,
);
