import { describe, expect, it } from "vitest";
import {
  EMBEDDED_REGISTRY,
  loadRegistry,
  PROJECT_ROOT,
  parseRegistry,
  RegistryError,
  renderPrompt,
} from "./registry.ts";

const base = {
  id: "m1",
  backend: { kind: "mock" },
  action: { dim: 7 },
  dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
};

function problems(doc: unknown): string[] {
  try {
    parseRegistry(doc, PROJECT_ROOT, "models.json");
  } catch (e) {
    if (e instanceof RegistryError) return [...e.problems];
    throw e;
  }
  return [];
}

describe("model registry", () => {
  it("loads the embedded defaults: mock-openvla-7b, demo-vla-tiny, mock-pi0 and the two tabletop policies", () => {
    const reg = loadRegistry(undefined);
    expect(reg.defaultModel).toBe("mock-openvla-7b");
    expect(reg.models.map((m) => m.id)).toEqual([
      "mock-openvla-7b",
      "demo-vla-tiny",
      "mock-pi0",
      "tabletop-policy",
      "tabletop-policy-chunk",
    ]);
    const mock = reg.models[0];
    expect(mock?.statistics.keys).toEqual(["bridge_orig", "fractal20220817_data"]);
    // Two keys and a default, so a client naming none (the stock openpi client) can use it.
    expect(mock?.defaultUnnormKey).toBe("bridge_orig");
    const demo = reg.models[1];
    expect(demo?.backend.kind).toBe("onnx");
    expect(demo?.defaultUnnormKey).toBe("bridge_orig");
    expect(demo?.image).toMatchObject({ width: 224, height: 224, strategy: "resize-naive" });
    expect(mock?.backend).toMatchObject({ kind: "mock", output: "tokens" });
    expect(EMBEDDED_REGISTRY.models).toHaveLength(5);
    const [logits, chunk] = [reg.models[3], reg.models[4]];
    expect(logits?.defaultUnnormKey).toBe("sim_tabletop");
    expect(logits?.action).toMatchObject({ dim: 7, chunk: 1 });
    expect(chunk?.defaultUnnormKey).toBe("sim_tabletop");
    expect(chunk?.action).toMatchObject({ dim: 7, chunk: 8 });
  });

  it("loads mock-pi0: a pi0-like trajectory mock, H = 10, synthetic statistics, openpi's quantile un-normalization", () => {
    const pi0 = loadRegistry(undefined).models.find((m) => m.id === "mock-pi0");
    expect(pi0?.backend).toEqual({ kind: "mock", latencyMs: 0, perItemMs: 0, output: "trajectory" });
    expect(pi0?.action).toEqual({ dim: 7, chunk: 10 });
    expect(pi0?.statistics.keys).toEqual(["synthetic_delta_ee"]);
    expect(pi0?.defaultUnnormKey).toBe("synthetic_delta_ee");
    expect(pi0?.unnormalization).toEqual({ mode: "bounds_q99", epsilon: 1e-6 });
    expect(pi0?.image).toMatchObject({ width: 224, height: 224, strategy: "letterbox" });
    expect(renderPrompt(pi0 as NonNullable<typeof pi0>, "Stack the Cups")).toBe("Stack the Cups");
    const action = pi0?.statistics.entries.get("synthetic_delta_ee")?.action;
    // Every dimension normalized (openpi has no mask); the gripper's range is RLDS's [0, 1].
    expect(action?.mask).toBeUndefined();
    expect([action?.q01[6], action?.q99[6], action?.min?.[6], action?.max?.[6]]).toEqual([0, 1, 0, 1]);
  });

  it("a mock's output must be tokens or trajectory", () => {
    expect(problems({ models: [{ ...base, backend: { kind: "mock", output: "chunks" } }] })).toContain(
      'models.json: model "m1" (models[0]): backend.output: expected "tokens" or "trajectory"',
    );
  });

  it("applies defaults to a minimal entry, with inline statistics", () => {
    const reg = parseRegistry(
      {
        models: [
          {
            ...base,
            dataset_statistics: { k: { action: { q01: [0, 0, 0, 0, 0, 0, 0], q99: [1, 1, 1, 1, 1, 1, 1] } } },
          },
        ],
      },
      PROJECT_ROOT,
    );
    const m = reg.models[0];
    expect(m?.batching).toEqual({
      maxBatchSize: 8,
      maxWaitMs: 2,
      maxQueue: 256,
      timeoutMs: 10_000,
      maxConcurrentBatches: 1,
    });
    expect(m?.unnormalization).toEqual({ mode: "bounds_q99", epsilon: 0 });
    expect(m?.statistics.keys).toEqual(["k"]);
  });

  it("renders the OpenVLA prompt with the instruction lower-cased", () => {
    const m = loadRegistry(undefined).models[0];
    if (m === undefined) throw new Error("missing");
    expect(renderPrompt(m, "Put The Carrot on the plate")).toBe(
      "In: What action should the robot take to put the carrot on the plate?\nOut:",
    );
    expect(renderPrompt({ ...m, lowercaseInstruction: false }, "Go")).toBe(
      "In: What action should the robot take to Go?\nOut:",
    );
  });

  it.each([
    [{ ...base, backend: { kind: "tpu" } }, /model "m1" \(models\[0\]\): backend\.kind/],
    [
      { ...base, action: { dim: 6 } },
      /model "m1".*dataset_statistics\.bridge_orig: action dimension 7 != action\.dim 6/,
    ],
    [{ ...base, image: { strategy: "squash" } }, /model "m1".*image\.strategy/],
    [{ ...base, default_unnorm_key: "kuka" }, /model "m1".*default_unnorm_key: "kuka"/],
    [{ ...base, prompt_template: "no placeholder" }, /model "m1".*prompt_template/],
    [{ ...base, dataset_statistics: "nope.json" }, /model "m1".*dataset_statistics: .*nope\.json/],
    [{ ...base, batching: { max_batch_size: 0 } }, /model "m1".*batching\.max_batch_size/],
    [{ ...base, backend: { kind: "onnx", model_dir: "models/none" } }, /model "m1".*backend\.model_dir/],
    [
      { ...base, backend: { kind: "onnx", model_dir: "models/demo-vla-tiny", run_in_worker: "yes" } },
      /model "m1".*backend\.run_in_worker: expected true or false/,
    ],
    [{ ...base, backend: { kind: "openvla-http", endpoints: ["ftp://x"] } }, /model "m1".*backend\.endpoints\[0\]/],
    [{ ...base, backend: { kind: "kserve-v2", endpoints: ["http://x:1"] } }, /model "m1".*backend\.model_name/],
    [
      {
        ...base,
        backend: {
          kind: "openvla-http",
          endpoints: ["http://x:1", "http://y:1"],
          metrics_urls: ["http://x:8002/metrics"],
        },
      },
      /model "m1".*backend\.metrics_urls: expected one entry per endpoint/,
    ],
    [
      { ...base, backend: { kind: "openvla-http", endpoints: ["http://x:1"], metrics_urls: ["file:///etc/passwd"] } },
      /model "m1".*backend\.metrics_urls\[0\]: not an http\(s\) URL/,
    ],
    [{ ...base, id: "Bad Id" }, /model "Bad Id".*id:/],
  ])("refuses invalid entry %#, naming the model and field", (entry, message) => {
    const p = problems({ models: [entry] });
    expect(p.join("\n")).toMatch(message);
  });

  it("reads metrics_urls per endpoint (null = none); absent means none", () => {
    const remote = (backend: Record<string, unknown>) =>
      parseRegistry({ models: [{ ...base, backend }] }, PROJECT_ROOT).models[0]?.backend;
    const b = remote({
      kind: "openvla-http",
      endpoints: ["http://a:1", "http://b:1"],
      metrics_urls: [null, "http://b:8002/metrics"],
    });
    expect(b !== undefined && "metricsUrls" in b ? b.metricsUrls : "none").toEqual([
      undefined,
      "http://b:8002/metrics",
    ]);
    const c = remote({ kind: "openvla-http", endpoints: ["http://a:1"] });
    expect(c !== undefined && "metricsUrls" in c ? c.metricsUrls : "none").toEqual([undefined]);
  });

  it("reports every invalid model at once, and duplicates", () => {
    const p = problems({ models: [{ ...base, action: {} }, { ...base, id: "m2", backend: {} }, base, base] });
    expect(p).toHaveLength(3);
    expect(p[2]).toMatch(/duplicate/);
    expect(problems({ default_model: "zzz", models: [base] })[0]).toMatch(/default_model/);
  });
});
