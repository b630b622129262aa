import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { defaultBenchModelDir, writeBenchModel } from "../../scripts/make-bench-model.ts";
import { loadOnnxModelConfig } from "../../src/modules/models/backends/onnx.ts";
import { benchModelShape, buildBenchModel } from "../../src/modules/models/bench-model.ts";
import { DEMO } from "../../src/modules/models/demo-model.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "bench-model-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("make-bench-model", () => {
  it("writes a model directory the engine loads, with the demo's inputs and a [B, 7, 256] output", async () => {
    const out = path.join(dir, "bench-vla-mlp");
    const { bytes } = writeBenchModel(out, 1);
    const shape = benchModelShape(1);
    expect(shape).toMatchObject({ hidden: 512, layers: 1 });
    expect(bytes).toBeGreaterThan(shape.weightBytes);

    const config = loadOnnxModelConfig(out);
    expect(config.image).toMatchObject({ name: "image", height: 224, width: 224 });
    expect(config.output).toMatchObject({
      name: "action_logits",
      kind: "action_token_logits",
      actionDim: 7,
      bins: 256,
    });
    expect(JSON.parse(readFileSync(path.join(out, "dataset_statistics.json"), "utf8"))).toHaveProperty("bridge_orig");

    const session = await ort.InferenceSession.create(path.join(out, "model.onnx"));
    try {
      expect([...session.inputNames]).toEqual(["image", "tokens"]);
      const image = new ort.Tensor("uint8", new Uint8Array(2 * 224 * 224 * 3).fill(128), [2, 224, 224, 3]);
      const tokens = new ort.Tensor("int64", new BigInt64Array(2 * DEMO.maxTokens).fill(7n), [2, DEMO.maxTokens]);
      const result = await session.run({ image, tokens });
      const logits = result.action_logits as ort.Tensor;
      expect(logits.dims).toEqual([2, 7, 256]);
      expect((logits.data as Float32Array).every(Number.isFinite)).toBe(true);
    } finally {
      await session.release();
    }
  });

  it("is deterministic and sizes the weights from --mb", () => {
    expect(Buffer.from(buildBenchModel(1)).equals(Buffer.from(buildBenchModel(1)))).toBe(true);
    expect(benchModelShape(200)).toMatchObject({ hidden: 2048, layers: 13 });
    expect(() => benchModelShape(0)).toThrow(RangeError);
  });

  it("defaults to a folder under DATA_DIR (never the committed models/)", () => {
    expect(defaultBenchModelDir({ DATA_DIR: "/tmp/x" })).toBe(path.resolve("/tmp/x/bench-models/bench-vla-mlp"));
  });
});
