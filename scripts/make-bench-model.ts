/**
 * Writes a weight-bound benchmark model directory (model.onnx, config.json,
 * dataset_statistics.json) for bench/engine-large.bench.ts. Generated, never committed.
 *
 *   npm run make-bench-model -- [--out DIR] [--mb N]
 *
 * --out defaults to <DATA_DIR or ./data>/bench-models/bench-vla-mlp; --mb (float32 weight
 * MiB, default 200) sets the number of 2048x2048 hidden layers. Same inputs/outputs as
 * demo-vla-tiny (src/modules/models/bench-model.ts).
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  BENCH_MODEL_DEFAULT_MB,
  benchConfig,
  benchModelShape,
  buildBenchModel,
} from "../src/modules/models/bench-model.ts";

const root = path.resolve(import.meta.dirname, "..");

export function defaultBenchModelDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.DATA_DIR ?? path.join(root, "data"), "bench-models", "bench-vla-mlp");
}

/** Writes the model directory; returns the model's size and sha256. */
export function writeBenchModel(dir: string, mb: number): { bytes: number; sha256: string } {
  const model = buildBenchModel(mb);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "model.onnx"), model);
  writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(benchConfig(mb), null, 2)}\n`);
  copyFileSync(
    path.join(root, "models", "demo-vla-tiny", "dataset_statistics.json"),
    path.join(dir, "dataset_statistics.json"),
  );
  return { bytes: model.byteLength, sha256: createHash("sha256").update(model).digest("hex") };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { out: { type: "string" }, mb: { type: "string" } },
  });
  const dir = path.resolve(values.out ?? defaultBenchModelDir());
  const mb = Number(values.mb ?? BENCH_MODEL_DEFAULT_MB);
  const shape = benchModelShape(mb);
  const { bytes, sha256 } = writeBenchModel(dir, mb);
  console.log(
    `wrote ${dir}/model.onnx (${bytes} bytes, ${shape.layers} hidden layers of ${shape.hidden}x${shape.hidden}, sha256 ${sha256})`,
  );
}
