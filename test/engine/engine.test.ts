import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareImage } from "../../src/modules/inference/images.ts";
import { InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { decodeAction, decodeToken } from "../../src/modules/models/action-codec.ts";
import { MockBackend } from "../../src/modules/models/backends/mock.ts";
import {
  EMBEDDED_REGISTRY,
  loadRegistry,
  PROJECT_ROOT,
  parseRegistry,
  renderPrompt,
} from "../../src/modules/models/registry.ts";
import { AppError } from "../../src/platform/errors.ts";
import { jpeg, pattern, png } from "./helpers.ts";

const registry = loadRegistry(undefined);
let engine: InferenceEngine;
let image: Buffer;

beforeAll(async () => {
  engine = new InferenceEngine(registry);
  await engine.warmUp();
  image = await jpeg(320, 240, 1);
});
afterAll(async () => {
  await engine.close();
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
  return undefined;
}

describe("InferenceEngine with the mock backend", () => {
  it("is deterministic, labelled mock, and goes through the real codec", async () => {
    const req = {
      model: "mock-openvla-7b",
      imageBytes: image,
      instruction: "Pick up the Cup",
      unnormKey: "bridge_orig",
      customerId: "c1",
    };
    const a = await engine.infer(req);
    const b = await engine.infer({ ...req, customerId: "c2" });
    expect(a.backend).toBe("mock");
    expect(a.model).toBe("mock-openvla-7b");
    expect(a.unnormKey).toBe("bridge_orig");
    expect(a.action).toHaveLength(7);
    expect(b.action).toEqual(a.action);
    const def = registry.models.find((m) => m.id === "mock-openvla-7b");
    if (def === undefined) throw new Error("missing");
    const prompt = renderPrompt(def, req.instruction);
    expect(prompt).toBe("In: What action should the robot take to pick up the cup?\nOut:");
    const tokens = MockBackend.tokens({ modelId: def.id, prompt, imageSha256: a.imageSha256 }, 7);
    const stats = def.statistics.entries.get("bridge_orig")?.action;
    if (stats === undefined) throw new Error("missing");
    expect(a.action).toEqual(decodeAction(tokens, stats));
    // The absolute gripper stays in [0, 1] (RLDS convention), as the safety gate expects.
    for (let i = 0; i < 32; i++) {
      const g = MockBackend.tokens({ modelId: def.id, prompt: `p${i}`, imageSha256: a.imageSha256 }, 70, 7)
        .filter((_, k) => k % 7 === 6)
        .map(decodeToken);
      for (const v of g) expect(v >= 0 && v <= 1).toBe(true);
    }
    const other = await engine.infer({ ...req, instruction: "open the drawer" });
    expect(other.action).not.toEqual(a.action);
    expect(a.timing.preprocess_ms).toBeGreaterThanOrEqual(0);
  });

  it("accepts a uint8 HxWx3 array", async () => {
    const data = new Uint8Array(pattern(64, 48, 2));
    const r = await engine.infer({
      model: "mock-openvla-7b",
      imageArray: { dtype: "|u1", shape: [48, 64, 3], data },
      instruction: "wave",
      unnormKey: "fractal20220817_data",
      customerId: "c",
    });
    expect(r.action).toHaveLength(7);
    expect(r.unnormKey).toBe("fractal20220817_data");
  });

  it("400 without unnorm_key on a multi-key model, listing the keys; 400 on unknown key; 404 unknown model", async () => {
    const base = { model: "mock-openvla-7b", imageBytes: image, instruction: "x", customerId: "c" };
    // The embedded mock declares a default key; the same model without one must be told which.
    const [mockDef, ...rest] = EMBEDDED_REGISTRY.models;
    const undecided = new InferenceEngine(
      parseRegistry(
        { ...EMBEDDED_REGISTRY, models: [{ ...mockDef, default_unnorm_key: null }, ...rest] },
        PROJECT_ROOT,
      ),
    );
    try {
      await undecided.infer(base);
      expect.unreachable();
    } catch (e) {
      expect((e as AppError).code).toBe("invalid_unnorm_key");
      expect((e as AppError).status).toBe(400);
      expect((e as AppError).message).toMatch(/bridge_orig, fractal20220817_data/);
    } finally {
      await undecided.close();
    }
    expect((await engine.infer(base)).unnormKey).toBe("bridge_orig");
    expect(await codeOf(engine.infer({ ...base, unnormKey: "kuka" }))).toBe("invalid_unnorm_key");
    expect(await codeOf(engine.infer({ ...base, model: "gpt-robot" }))).toBe("unknown_model");
    expect(await codeOf(engine.infer({ ...base, unnormKey: "bridge_orig", imageBytes: Buffer.from("junk") }))).toBe(
      "invalid_image",
    );
    expect(await codeOf(engine.infer({ ...base, unnormKey: "bridge_orig", instruction: "" }))).toBe(
      "validation_failed",
    );
    expect(await codeOf(engine.infer({ ...base, unnormKey: "bridge_orig", instruction: "x".repeat(1001) }))).toBe(
      "validation_failed",
    );
  });

  it("describes models with status, keys and live stats", async () => {
    const list = engine.list();
    expect(list.map((m) => m.id)).toEqual([
      "mock-openvla-7b",
      "demo-vla-tiny",
      "mock-pi0",
      "tabletop-policy",
      "tabletop-policy-chunk",
    ]);
    const mock = engine.describe("mock-openvla-7b");
    expect(mock.status).toBe("ready");
    expect(mock.unnorm_keys).toEqual(["bridge_orig", "fractal20220817_data"]);
    expect(mock.default_unnorm_key).toBe("bridge_orig");
    expect(mock.stats.requests).toBeGreaterThan(0);
    // The 4xx answers above are the callers' mistakes, not model errors.
    expect(mock.stats.errors).toBe(0);
    expect(mock.stats.latency_ms.p50).not.toBeNull();
    expect(engine.describe("demo-vla-tiny").default_unnorm_key).toBe("bridge_orig");
    const health = await engine.healthCheck();
    expect(health.status).toBe("ok");
    expect(engine.queueCheck().status).toBe("ok");
  });
});

describe("InferenceEngine with demo-vla-tiny (ONNX)", () => {
  it("runs the real network in batches under concurrency", async () => {
    const demo = EMBEDDED_REGISTRY.models.find((m) => m.id === "demo-vla-tiny");
    const batched = new InferenceEngine(
      parseRegistry({ models: [{ ...demo, batching: { max_batch_size: 8, max_wait_ms: 1000 } }] }, PROJECT_ROOT),
    );
    const images = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((s) => png(200, 150, s)));
    // Arrays at the model's size reach the queue without a decode, so all eight arrive while
    // the first (sent alone to the idle model) runs: the other seven form one batch.
    const spec = { width: 224, height: 224, strategy: "resize-naive" as const };
    const arrays = await Promise.all(images.map((bytes) => prepareImage({ bytes }, spec)));
    const results = await Promise.all(
      arrays.map((p, i) =>
        batched.infer({
          model: "demo-vla-tiny",
          imageArray: { dtype: "|u1", shape: [224, 224, 3], data: p.data },
          instruction: `task ${i % 3}`,
          customerId: `c${i % 2}`,
        }),
      ),
    );
    expect(results.map((r) => r.batchSize)).toEqual([1, 7, 7, 7, 7, 7, 7, 7]);
    expect(batched.describe("demo-vla-tiny").stats.mean_batch_size).toBe(4);
    await batched.close();
    expect(results.every((r) => r.backend === "onnx" && r.action.length === 7 && r.unnormKey === "bridge_orig")).toBe(
      true,
    );
    // Same input alone gives the same action as inside a batch.
    const alone = await engine.infer({
      model: "demo-vla-tiny",
      imageBytes: images[3],
      instruction: "task 0",
      customerId: "z",
    });
    expect(alone.action).toEqual(results[3]?.action);
  });

  it("shares preprocessing with prepareImage", async () => {
    const def = registry.models.find((m) => m.id === "demo-vla-tiny");
    if (def === undefined) throw new Error("missing");
    const p = await prepareImage({ bytes: image }, def.image);
    expect(p.width).toBe(224);
  });
});
