/**
 * demo-vla-tiny through the InferenceEngine (preprocessing + batching scheduler + onnxruntime),
 * 16 concurrent callers, batching on (max batch 16, max wait 3 ms) vs off (max batch 1).
 * Run: `npx node bench/engine.bench.ts [seconds-per-mode]` (default 10). Prints a Markdown table.
 * The two modes of each comparison run in alternating slices (BENCH_ROUNDS, default 4), and
 * the process's CPU time per request is reported beside the throughput: on a shared machine
 * the CPU cost is steadier than the wall-clock rate.
 */
import os from "node:os";
import sharp from "sharp";
import { InferenceEngine } from "../src/modules/inference/inference.service.ts";
import { createJpegDecoder } from "../src/modules/inference/jpeg-pool.ts";
import type { NdArray } from "../src/modules/inference/ndarray.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../src/modules/models/registry.ts";

const CALLERS = 16;
const seconds = Number(process.argv[2] ?? 10);
/** Alternating slices per comparison (BENCH_ROUNDS, default 4). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);

async function frames(n: number): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: n }, (_, s) => {
      const raw = Buffer.alloc(224 * 224 * 3);
      for (let i = 0; i < raw.length; i++) raw[i] = (i * (s + 3) + (i >> 9)) & 255;
      return sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer();
    }),
  );
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

interface Row {
  mode: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  meanBatch: number;
  modelMs: number;
  /** Process CPU time (every thread: event loop, ONNX worker, libuv pool) per request. */
  cpuMs: number;
}

type Input = { imageBytes: Buffer } | { imageArray: NdArray };

interface Mode {
  readonly name: string;
  readonly maxBatchSize: number;
  readonly inputs: Input[];
  readonly concurrentBatches?: number;
}

interface Acc {
  latencies: number[];
  modelMs: number;
  elapsed: number;
  cpuMs: number;
}

/** Model-sized JPEGs decode as in production: JPEG_DECODE_THREADS threads (default 2), shared by the engines. */
const jpegDecoder = createJpegDecoder(Number(process.env.JPEG_DECODE_THREADS ?? 2));

async function makeEngine(maxBatchSize: number, concurrentBatches: number): Promise<InferenceEngine> {
  const demo = EMBEDDED_REGISTRY.models.find((m) => m.id === "demo-vla-tiny");
  const registry = parseRegistry(
    {
      models: [
        {
          ...demo,
          batching: {
            max_batch_size: maxBatchSize,
            max_wait_ms: 3,
            max_queue: 1024,
            max_concurrent_batches: concurrentBatches,
          },
        },
      ],
    },
    PROJECT_ROOT,
  );
  const engine = new InferenceEngine(registry, { jpegDecoder });
  await engine.warmUp();
  return engine;
}

/** One slice of `ms` with CALLERS concurrent callers looping on `infer`. */
async function slice(engine: InferenceEngine, inputs: Input[], ms: number, acc: Acc): Promise<void> {
  const stopAt = performance.now() + ms;
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, c) => {
      let i = c;
      while (performance.now() < stopAt) {
        const t0 = performance.now();
        const r = await engine.infer({
          model: "demo-vla-tiny",
          ...(inputs[i % inputs.length] as Input),
          instruction: `pick up object ${i % 5}`,
          customerId: `robot-${c}`,
        });
        acc.latencies.push(performance.now() - t0);
        acc.modelMs += r.timing.model_ms;
        i += CALLERS;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  acc.cpuMs += (cpu.user + cpu.system) / 1000;
  acc.elapsed += (performance.now() - started) / 1000;
}

/**
 * The modes of one comparison run in alternating slices (ROUNDS rounds, order flipped every
 * round), so that drifts in the load of a shared machine hit every mode alike.
 */
async function compare(modes: readonly Mode[]): Promise<Row[]> {
  const engines = await Promise.all(modes.map((m) => makeEngine(m.maxBatchSize, m.concurrentBatches ?? 1)));
  // Warm the runtime and sharp before measuring.
  for (const [k, m] of modes.entries()) {
    const engine = engines[k] as InferenceEngine;
    await Promise.all(
      m.inputs.map((input) =>
        engine.infer({ model: "demo-vla-tiny", ...input, instruction: "warm up", customerId: "w" }),
      ),
    );
  }
  // The decode threads start with the first JPEG (which sharp serves meanwhile): let them load.
  await new Promise((r) => setTimeout(r, 500));
  const accs: Acc[] = modes.map(() => ({ latencies: [], modelMs: 0, elapsed: 0, cpuMs: 0 }));
  const sliceMs = (seconds * 1000) / ROUNDS;
  for (let round = 0; round < ROUNDS; round++) {
    const order = modes.map((_, k) => k);
    if (round % 2 === 1) order.reverse();
    for (const k of order)
      await slice(engines[k] as InferenceEngine, (modes[k] as Mode).inputs, sliceMs, accs[k] as Acc);
  }
  const rows: Row[] = [];
  for (const [k, m] of modes.entries()) {
    const engine = engines[k] as InferenceEngine;
    const acc = accs[k] as Acc;
    const info = engine.describe("demo-vla-tiny");
    await engine.close();
    acc.latencies.sort((a, b) => a - b);
    rows.push({
      mode: m.name,
      requests: acc.latencies.length,
      rps: acc.latencies.length / acc.elapsed,
      p50: percentile(acc.latencies, 0.5),
      p99: percentile(acc.latencies, 0.99),
      meanBatch: info.stats.mean_batch_size ?? 1,
      modelMs: acc.modelMs / acc.latencies.length,
      cpuMs: acc.cpuMs / acc.latencies.length,
    });
  }
  return rows;
}

const jpegs: Input[] = (await frames(8)).map((imageBytes) => ({ imageBytes }));
const arrays: Input[] = await Promise.all(
  jpegs.map(async (j) => {
    const raw = await sharp((j as { imageBytes: Buffer }).imageBytes)
      .raw()
      .toBuffer();
    return { imageArray: { dtype: "|u1", shape: [224, 224, 3], data: new Uint8Array(raw) } as NdArray };
  }),
);
const rows = [
  ...(await compare([
    { name: "224x224 JPEG, batching off (max batch 1)", maxBatchSize: 1, inputs: jpegs },
    { name: "224x224 JPEG, batching on (max batch 16, wait 3 ms)", maxBatchSize: 16, inputs: jpegs },
  ])),
  ...(await compare([
    { name: "uint8 224x224x3 array, batching off", maxBatchSize: 1, inputs: arrays },
    { name: "uint8 224x224x3 array, batching on", maxBatchSize: 16, inputs: arrays },
  ])),
  ...(await compare([
    {
      name: "uint8 224x224x3 array, batching off, 2 concurrent runs",
      maxBatchSize: 1,
      inputs: arrays,
      concurrentBatches: 2,
    },
    {
      name: "uint8 224x224x3 array, batching on, 2 concurrent batches",
      maxBatchSize: 16,
      inputs: arrays,
      concurrentBatches: 2,
    },
  ])),
];
console.log(
  `demo-vla-tiny, ${CALLERS} concurrent callers, ${seconds} s per mode, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), Node ${process.version}`,
);
console.log("");
console.log(
  "| mode | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | mean model time (ms) | CPU per request (ms) |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.requests} | ${r.rps.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.meanBatch.toFixed(2)} | ${r.modelMs.toFixed(2)} | ${r.cpuMs.toFixed(3)} |`,
  );
}
const [off, on, aoff, aon, aoff2, aon2] = rows as [Row, Row, Row, Row, Row, Row];
console.log("");
console.log(`JPEG: throughput on/off ${(on.rps / off.rps).toFixed(2)}x, p99 on/off ${(on.p99 / off.p99).toFixed(2)}x`);
console.log(
  `array: throughput on/off ${(aon.rps / aoff.rps).toFixed(2)}x, p99 on/off ${(aon.p99 / aoff.p99).toFixed(2)}x`,
);
console.log(
  `array, 2 concurrent: throughput on/off ${(aon2.rps / aoff2.rps).toFixed(2)}x, p99 on/off ${(aon2.p99 / aoff2.p99).toFixed(2)}x`,
);
console.log(
  `CPU per request off/on: JPEG ${(off.cpuMs / on.cpuMs).toFixed(2)}x, array ${(aoff.cpuMs / aon.cpuMs).toFixed(2)}x, array 2 concurrent ${(aoff2.cpuMs / aon2.cpuMs).toFixed(2)}x`,
);
