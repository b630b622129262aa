/**
 * demo-vla-tiny through the InferenceEngine (preprocessing + batching scheduler + onnxruntime),
 * 16 concurrent callers, batching on (max batch 16, max wait 3 ms) vs off (max batch 1).
 * Run: `npx node bench/engine.bench.ts [seconds-per-mode]` (default 10). Prints a Markdown table.
 */
import os from "node:os";
import sharp from "sharp";
import { InferenceEngine } from "../src/modules/inference/inference.service.ts";
import type { NdArray } from "../src/modules/inference/ndarray.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../src/modules/models/registry.ts";

const CALLERS = 16;
const seconds = Number(process.argv[2] ?? 10);

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
}

type Input = { imageBytes: Buffer } | { imageArray: NdArray };

async function run(mode: string, maxBatchSize: number, inputs: Input[], concurrentBatches = 1): Promise<Row> {
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
  const engine = new InferenceEngine(registry);
  await engine.warmUp();
  // Warm the runtime and sharp before measuring.
  await Promise.all(
    inputs.map((input) => engine.infer({ model: "demo-vla-tiny", ...input, instruction: "warm up", customerId: "w" })),
  );
  const latencies: number[] = [];
  let modelMs = 0;
  const stopAt = performance.now() + seconds * 1000;
  const started = performance.now();
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
        latencies.push(performance.now() - t0);
        modelMs += r.timing.model_ms;
        i += CALLERS;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const info = engine.describe("demo-vla-tiny");
  await engine.close();
  latencies.sort((a, b) => a - b);
  return {
    mode,
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    meanBatch: info.stats.mean_batch_size ?? 1,
    modelMs: modelMs / latencies.length,
  };
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
  await run("224x224 JPEG, batching off (max batch 1)", 1, jpegs),
  await run("224x224 JPEG, batching on (max batch 16, wait 3 ms)", 16, jpegs),
  await run("uint8 224x224x3 array, batching off", 1, arrays),
  await run("uint8 224x224x3 array, batching on", 16, arrays),
  await run("uint8 224x224x3 array, batching off, 2 concurrent runs", 1, arrays, 2),
  await run("uint8 224x224x3 array, batching on, 2 concurrent batches", 16, arrays, 2),
];
console.log(
  `demo-vla-tiny, ${CALLERS} concurrent callers, ${seconds} s per mode, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), Node ${process.version}`,
);
console.log("");
console.log("| mode | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | mean model time (ms) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.mode} | ${r.requests} | ${r.rps.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.meanBatch.toFixed(2)} | ${r.modelMs.toFixed(2)} |`,
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
