import { copyFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AppError } from "../../../platform/errors.ts";
import { DEMO } from "../demo-model.ts";
import { PROJECT_ROOT } from "../registry.ts";
import { loadOnnxModelConfig, OnnxBackend, type OnnxModelConfig } from "./onnx.ts";
import type { BackendRequest } from "./types.ts";

const demoDir = path.join(PROJECT_ROOT, "models", "demo-vla-tiny");

function backend(config: OnnxModelConfig, modelDir = demoDir, runInWorker = true): OnnxBackend {
  return new OnnxBackend({
    modelId: "t",
    modelDir,
    config,
    executionProviders: ["cpu"],
    intraOpThreads: 1,
    interOpThreads: 1,
    runInWorker,
  });
}

function request(fill: number): BackendRequest {
  const size = DEMO.imageSize;
  return {
    modelId: "t",
    image: {
      data: new Uint8Array(size * size * 3).fill(fill),
      width: size,
      height: size,
      sha256: "",
      path: "array",
      source: { format: "array", width: size, height: size },
    },
    prompt: "pick up the block",
    instruction: "pick up the block",
    unnormKey: "bridge_orig",
  };
}

describe("OnnxBackend (session on a worker thread: run_in_worker)", () => {
  it("runs batches on the worker, reusing transferred input buffers, and closes", async () => {
    const b = backend(loadOnnxModelConfig(demoDir));
    await b.warmUp();
    expect((await b.health()).status).toBe("ok");
    for (let round = 0; round < 3; round++) {
      const out = await b.infer([request(10), request(200), request(10)]);
      expect(out).toHaveLength(3);
      expect(out[0]).toEqual(out[2]);
      for (const r of out) {
        if (r instanceof Error || r.kind !== "tokens") throw new Error("expected tokens");
        expect(r.tokens).toHaveLength(DEMO.actionDim);
      }
    }
    const [alone] = await b.infer([request(200)]);
    const [, inBatch] = await b.infer([request(10), request(200)]);
    expect(alone).toEqual(inBatch);
    await b.close();
  });

  it("answers exactly what the in-thread session answers", async () => {
    const config = loadOnnxModelConfig(demoDir);
    const worker = backend(config, demoDir, true);
    const inThread = backend(config, demoDir, false);
    const batch = [request(3), request(77), request(250)];
    expect(await worker.infer(batch)).toEqual(await inThread.infer(batch));
    expect((await worker.health()).detail).toContain("worker thread");
    expect((await inThread.health()).detail).not.toContain("worker thread");
    await worker.close();
    await inThread.close();
  });

  it.each([
    [true, "worker"],
    [false, "in-thread"],
  ])(
    "reports a model directory whose config names a missing input (%s, %s): warm-up fails, health is down, runs are 503",
    async (inWorker) => {
      const dir = mkdtempSync(path.join(tmpdir(), "onnx-bad-"));
      copyFileSync(path.join(demoDir, "model.onnx"), path.join(dir, "model.onnx"));
      const good = loadOnnxModelConfig(demoDir);
      const b = backend({ ...good, image: { ...good.image, name: "pixels" } }, dir, inWorker);
      await expect(b.warmUp()).rejects.toThrow(/no input "pixels"/);
      expect((await b.health()).status).toBe("down");
      const e = await b.infer([request(1)]).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(AppError);
      expect((e as AppError).status).toBe(503);
      await b.close();
    },
  );
});
