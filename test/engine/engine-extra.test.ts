import { createHash } from "node:crypto";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { createEngine, InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { warmFastJpeg } from "../../src/modules/inference/jpeg-fast.ts";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { decodeToken, unnormalize } from "../../src/modules/models/action-codec.ts";
import { MockBackend } from "../../src/modules/models/backends/mock.ts";
import type { ModelBackend } from "../../src/modules/models/backends/types.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { AppError } from "../../src/platform/errors.ts";
import { HealthRegistry } from "../../src/platform/health.ts";
import { Lifecycle } from "../../src/platform/lifecycle.ts";
import { type FakeServer, json, sleep, startServer } from "./fake-servers.ts";
import { jpeg } from "./helpers.ts";

const stats = "models/mock-openvla-7b/dataset_statistics.json";
const servers: FakeServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
  return undefined;
}

describe("action chunks", () => {
  it("a chunked mock returns H steps through the codec; action is the first step", async () => {
    const reg = parseRegistry(
      {
        models: [
          {
            id: "chunky",
            backend: { kind: "mock" },
            action: { dim: 7, chunk: 4 },
            dataset_statistics: stats,
            default_unnorm_key: "bridge_orig",
          },
        ],
      },
      PROJECT_ROOT,
    );
    const engine = new InferenceEngine(reg);
    const imageBytes = await jpeg(64, 64, 3);
    const r = await engine.infer({ model: "chunky", imageBytes, instruction: "Stack", customerId: "c" });
    expect(r.actionChunk).toHaveLength(4);
    expect(r.action).toEqual(r.actionChunk?.[0]);
    const def = reg.models[0];
    const s = def?.statistics.entries.get("bridge_orig")?.action;
    if (def === undefined || s === undefined) throw new Error("missing");
    const sha = createHash("sha256").update(imageBytes).digest("hex");
    const tokens = MockBackend.tokens(
      { modelId: "chunky", prompt: "In: What action should the robot take to stack?\nOut:", imageSha256: sha },
      28,
      7,
    );
    expect(r.actionChunk?.[3]).toEqual(unnormalize(tokens.slice(21, 28).map(decodeToken), s));
    await engine.close();
  });

  it("an OpenVLA-OFT style server answering a list of K arrays yields a chunk", async () => {
    const s = await startServer((_q, _b, res) =>
      json(
        res,
        200,
        [0, 1, 2].map((k) => encodeJsonNumpy(new Float64Array([k, 0, 0, 0, 0, 0, 1]), [7])),
      ),
    );
    servers.push(s);
    const reg = parseRegistry(
      {
        models: [
          {
            id: "oft",
            backend: { kind: "openvla-http", endpoints: [s.url] },
            action: { dim: 7, chunk: 8 },
            dataset_statistics: stats,
            default_unnorm_key: "bridge_orig",
          },
        ],
      },
      PROJECT_ROOT,
    );
    const engine = new InferenceEngine(reg);
    const r = await engine.infer({
      model: "oft",
      imageBytes: await jpeg(64, 64, 1),
      instruction: "go",
      customerId: "c",
    });
    expect(r.actionChunk?.map((row) => row[0])).toEqual([0, 1, 2]);
    await engine.close();
  });
});

describe("circuit recovery", () => {
  it("after the cooldown one trial request goes to the endpoint and closes the circuit when it succeeds", async () => {
    let healthy = false;
    const flaky = await startServer((_q, _b, res) =>
      healthy ? json(res, 200, encodeJsonNumpy(new Float64Array(7), [7])) : json(res, 503, { detail: "warming" }),
    );
    servers.push(flaky);
    const reg = parseRegistry(
      {
        models: [
          {
            id: "r",
            backend: {
              kind: "openvla-http",
              endpoints: [flaky.url],
              retries: 0,
              circuit: { failure_threshold: 1, cooldown_ms: 50 },
            },
            action: { dim: 7 },
            dataset_statistics: stats,
            default_unnorm_key: "bridge_orig",
          },
        ],
      },
      PROJECT_ROOT,
    );
    const engine = new InferenceEngine(reg);
    const req = async () =>
      engine.infer({ model: "r", imageBytes: await jpeg(32, 32, 1), instruction: "go", customerId: "c" });
    expect(await codeOf(req())).toBe("model_unavailable");
    expect(flaky.hits).toBe(1);
    // Circuit open: rejected without a call.
    expect(await codeOf(req())).toBe("model_unavailable");
    expect(flaky.hits).toBe(1);
    healthy = true;
    await sleep(80);
    expect((await req()).action).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(flaky.hits).toBe(2);
    expect((await engine.healthCheck()).status).toBe("ok");
    await engine.close();
  });
});

describe("createEngine", () => {
  it("registers health checks, metrics, and closes backends on the lifecycle flush", async () => {
    const health = new HealthRegistry();
    const lifecycle = new Lifecycle();
    const metrics = new Registry();
    let closed = 0;
    const engine = createEngine(
      {
        models: {
          configPath: undefined,
          imageMaxBytes: 1024 * 1024,
          imageMaxPixels: 1e6,
          jpegDecodeThreads: 0,
          warmUp: true,
          backendMetrics: { intervalMs: 0, timeoutMs: 1000, maxBytes: 1024, staleAfter: 1 },
        },
      },
      { metrics, health, lifecycle },
      {
        backendFactory: (def): ModelBackend => {
          const mock = new MockBackend({ actionDim: def.action.dim, chunk: 1, latencyMs: 0, perItemMs: 0 });
          return Object.assign(Object.create(mock) as ModelBackend, {
            kind: mock.kind,
            infer: mock.infer.bind(mock),
            health: mock.health.bind(mock),
            warmUp: mock.warmUp.bind(mock),
            close: async () => {
              closed += 1;
            },
          });
        },
      },
    );
    await engine.infer({
      model: "demo-vla-tiny",
      imageBytes: await jpeg(32, 32, 1),
      instruction: "go",
      customerId: "c",
    });
    const report = await health.run();
    expect(Object.keys(report.checks).sort()).toEqual(["models", "queue"]);
    expect(await metrics.metrics()).toContain('vla_model_batch_size_count{model="demo-vla-tiny"} 1');
    // Which path prepared each image: a 32x32 JPEG is resampled by sharp; a model-sized one takes
    // the fast decoder (in line here: JPEG_DECODE_THREADS=0); a model-sized array is taken as is.
    await warmFastJpeg();
    await engine.infer({
      model: "demo-vla-tiny",
      imageBytes: await jpeg(224, 224, 2),
      instruction: "go",
      customerId: "c",
    });
    await engine.infer({
      model: "demo-vla-tiny",
      imageArray: { dtype: "|u1", shape: [224, 224, 3], data: new Uint8Array(224 * 224 * 3) },
      instruction: "go",
      customerId: "c",
    });
    const text = await metrics.metrics();
    expect(text).toContain('vla_image_decodes_total{path="sharp"} 1');
    expect(text).toContain('vla_image_decodes_total{path="jpeg_fast"} 1');
    expect(text).toContain('vla_image_decodes_total{path="array"} 1');
    // The image limit from config applies.
    expect(
      await codeOf(
        engine.infer({
          model: "demo-vla-tiny",
          imageBytes: await jpeg(1200, 1000, 1),
          instruction: "go",
          customerId: "c",
        }),
      ),
    ).toBe("invalid_image");
    await lifecycle.run();
    // Every backend of the embedded registry.
    expect(closed).toBe(EMBEDDED_REGISTRY.models.length);
    expect(
      await codeOf(
        engine.infer({ model: "demo-vla-tiny", imageBytes: await jpeg(32, 32, 1), instruction: "go", customerId: "c" }),
      ),
    ).toBe("shutting_down");
  });

  it("an invalid MODELS_CONFIG stops startup with a message naming the model and field", () => {
    expect(() =>
      createEngine(
        {
          models: {
            configPath: `${PROJECT_ROOT}/models/demo-vla-tiny/config.json`,
            imageMaxBytes: 1,
            imageMaxPixels: 1,
            jpegDecodeThreads: 0,
            warmUp: false,
            backendMetrics: { intervalMs: 0, timeoutMs: 1000, maxBytes: 1024, staleAfter: 1 },
          },
        },
        { metrics: new Registry(), health: new HealthRegistry(), lifecycle: new Lifecycle() },
      ),
    ).toThrow(/Invalid model registry/);
  });
});

describe("engine queue limits", () => {
  const slowMock = (batching: Record<string, unknown>, latency = 300) =>
    new InferenceEngine(
      parseRegistry(
        {
          models: [
            {
              id: "slow",
              backend: { kind: "mock", latency_ms: latency },
              action: { dim: 7 },
              dataset_statistics: stats,
              default_unnorm_key: "bridge_orig",
              batching,
            },
          ],
        },
        PROJECT_ROOT,
      ),
    );

  it("overflow is 503 model_overloaded with Retry-After; the admitted requests still succeed", async () => {
    // A long simulated latency so all six arrive while the first still runs, even on a busy machine.
    const engine = slowMock({ max_batch_size: 1, max_wait_ms: 0, max_queue: 2 }, 1000);
    const imageBytes = await jpeg(32, 32, 1);
    const calls = Array.from({ length: 6 }, () =>
      engine.infer({ model: "slow", imageBytes, instruction: "go", customerId: "c" }).then(
        () => "ok",
        (e: unknown) => e,
      ),
    );
    const outcomes = await Promise.all(calls);
    const rejected = outcomes.filter((o) => o !== "ok") as AppError[];
    // One running + two queued are admitted; the other three overflow.
    expect(outcomes.filter((o) => o === "ok")).toHaveLength(3);
    expect(rejected.map((e) => e.code)).toEqual(["model_overloaded", "model_overloaded", "model_overloaded"]);
    expect(rejected[0]?.status).toBe(503);
    expect(Number(rejected[0]?.headers["Retry-After"])).toBeGreaterThanOrEqual(1);
    expect(engine.describe("slow").stats.errors).toBe(3);
    await engine.close();
  });

  it("a request that cannot finish in time is 504 inference_timeout", async () => {
    const engine = slowMock({ timeout_ms: 50 });
    const r = await codeOf(
      engine.infer({ model: "slow", imageBytes: await jpeg(32, 32, 1), instruction: "go", customerId: "c" }),
    );
    expect(r).toBe("inference_timeout");
    await engine.close();
  });
});
