import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { createEngineMetrics } from "../../src/modules/inference/engine-metrics.ts";
import { InferenceEngine, type InferenceRequest } from "../../src/modules/inference/inference.service.ts";
import type { BackendRequest, BackendResult, ModelBackend } from "../../src/modules/models/backends/types.ts";
import {
  definitionFingerprint,
  PROJECT_ROOT,
  parseRegistry,
  type RegistryDocument,
  RegistryError,
} from "../../src/modules/models/registry.ts";
import { AppError } from "../../src/platform/errors.ts";
import { jpeg } from "./helpers.ts";

/** Live registry reload (issue 23): diffing by id, warm-up before the swap, drain, refusals. */

const STATS = "models/mock-openvla-7b/dataset_statistics.json";
const entry = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  backend: { kind: "mock" },
  action: { dim: 7, chunk: 1 },
  dataset_statistics: STATS,
  default_unnorm_key: "bridge_orig",
  ...extra,
});
const registry = (models: unknown[], defaultModel?: string): RegistryDocument =>
  parseRegistry({ models, ...(defaultModel === undefined ? {} : { default_model: defaultModel }) }, PROJECT_ROOT);

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * Fake backends: each instance answers an action whose every value is its instance number, so a
 * test sees which instance served a request. `hold` makes an id's next instances wait in infer;
 * `warmGate` / `warmFail` control an id's next warm-ups.
 */
class Backends {
  created = 0;
  readonly instances: { id: string; n: number; closed: boolean; calls: number }[] = [];
  readonly hold = new Map<string, Promise<void>>();
  readonly warmGate = new Map<string, Promise<void>>();
  readonly warmFail = new Map<string, string>();
  readonly buildFail = new Map<string, string>();

  factory = (def: { id: string }): ModelBackend => {
    const cannot = this.buildFail.get(def.id);
    if (cannot !== undefined) throw new Error(cannot);
    this.created += 1;
    const me = { id: def.id, n: this.created, closed: false, calls: 0 };
    this.instances.push(me);
    const hold = this.hold.get(def.id);
    return {
      kind: "mock",
      infer: async (batch: readonly BackendRequest[]): Promise<BackendResult[]> => {
        me.calls += 1;
        if (hold !== undefined) await hold;
        return batch.map(() => ({ kind: "actions", actions: [Array.from({ length: 7 }, () => me.n)] }));
      },
      health: async () => ({ status: "ok" }),
      warmUp: async () => {
        const gate = this.warmGate.get(def.id);
        if (gate !== undefined) await gate;
        const fail = this.warmFail.get(def.id);
        if (fail !== undefined) throw new Error(fail);
      },
      close: async () => {
        me.closed = true;
      },
    };
  };

  of(id: string) {
    return this.instances.filter((i) => i.id === id);
  }
}

let img: Uint8Array;
const engines: InferenceEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

async function setup(doc: RegistryDocument, metrics?: Registry) {
  img ??= await jpeg(32, 32, 1);
  const backends = new Backends();
  const engine = new InferenceEngine(doc, {
    backendFactory: backends.factory,
    ...(metrics === undefined ? {} : { metrics: createEngineMetrics(metrics) }),
  });
  engines.push(engine);
  const infer = (model: string | undefined, extra: Partial<InferenceRequest> = {}) =>
    engine.infer({ model, imageBytes: img, instruction: "go", customerId: "c", ...extra });
  return { engine, backends, infer };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
  return undefined;
}

describe("engine.reload: diffing by id", () => {
  it("keeps unchanged models, replaces changed ones, adds and removes, and switches the default", async () => {
    const { engine, backends, infer } = await setup(registry([entry("a"), entry("b"), entry("c")], "a"));
    expect((await infer("a")).action[0]).toBe(1);
    expect((await infer("b")).action[0]).toBe(2);
    const change = await engine.reload(
      registry([entry("a"), entry("b", { description: "new settings" }), entry("d")], "d"),
    );
    expect(change).toMatchObject({
      added: ["d"],
      changed: ["b"],
      removed: ["c"],
      unchanged: ["a"],
      defaultModel: "d",
      previousDefaultModel: "a",
    });
    expect(change.durationMs).toBeGreaterThanOrEqual(0);
    // a: the same backend instance, its statistics go on.
    expect(backends.of("a")).toHaveLength(1);
    expect((await infer("a")).action[0]).toBe(1);
    expect(engine.describe("a").stats.requests).toBe(2);
    // b: a new instance with the new definition; the old one closed (it had nothing to drain).
    expect(engine.describe("b").description).toBe("new settings");
    expect(backends.of("b")).toHaveLength(2);
    expect((await infer("b")).action[0]).toBe(backends.of("b")[1]?.n);
    expect(engine.describe("b").stats.requests).toBe(2); // carried over across the change
    expect(engine.describe("b").status).toBe("ready"); // warmed before it took traffic
    await expect.poll(() => backends.of("b")[0]?.closed).toBe(true);
    // c: gone.
    expect(await codeOf(infer("c"))).toBe("unknown_model");
    await expect.poll(() => backends.of("c")[0]?.closed).toBe(true);
    // d: new, and now the default.
    expect(engine.defaultModel).toBe("d");
    expect((await infer(undefined)).model).toBe("d");
    expect(engine.modelIds()).toEqual(["a", "b", "d"]);
  });

  it("compares parsed definitions: reordered keys and spelled-out defaults are no change", async () => {
    const { engine, backends } = await setup(registry([entry("a")]));
    const same = {
      default_unnorm_key: "bridge_orig",
      dataset_statistics: STATS,
      action: { chunk: 1, dim: 7 },
      backend: { kind: "mock" },
      id: "a",
      batching: { max_queue: 256 },
    };
    const change = await engine.reload(registry([same]));
    expect(change).toMatchObject({ added: [], changed: [], removed: [], unchanged: ["a"] });
    expect(backends.created).toBe(1);
    // Any difference counts, e.g. one batching setting.
    const doc = registry([entry("a", { batching: { max_queue: 9 } })]);
    expect(definitionFingerprint(doc.models[0] as never)).not.toBe(
      definitionFingerprint(registry([entry("a")]).models[0] as never),
    );
    expect((await engine.reload(doc)).changed).toEqual(["a"]);
    expect(engine.describe("a").batching.max_queue).toBe(9);
  });
});

describe("engine.reload: warm-up before traffic", () => {
  it("a new or changed model takes no traffic until its warm-up ended; the old one serves meanwhile", async () => {
    const { engine, backends, infer } = await setup(registry([entry("a"), entry("b")]));
    const gate = deferred();
    backends.warmGate.set("b", gate.promise);
    backends.warmGate.set("n", gate.promise);
    const reloading = engine.reload(registry([entry("a"), entry("b", { description: "v2" }), entry("n")]));
    await expect.poll(() => backends.created).toBe(4); // both built, both warming
    expect(await codeOf(infer("n"))).toBe("unknown_model");
    expect((await infer("b")).action[0]).toBe(2); // the old instance
    expect(engine.describe("b").description).toBe("");
    gate.resolve();
    await reloading;
    expect((await infer("b")).action[0]).toBe(3);
    expect((await infer("n")).action[0]).toBe(4);
  });

  it("a failed warm-up refuses the whole reload, lists the problems, closes what it built; the registry stays", async () => {
    const metrics = new Registry();
    const { engine, backends, infer } = await setup(registry([entry("a"), entry("b")], "a"), metrics);
    backends.warmFail.set("b", "endpoint refused the connection");
    backends.warmFail.set("n", "weights not found");
    const refused = engine.reload(registry([entry("a"), entry("b", { description: "v2" }), entry("n")], "n"));
    const err = await refused.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("model_warm_up_failed");
    expect((err as AppError).extensions.problems).toEqual([
      'model "b": warm-up failed: endpoint refused the connection',
      'model "n": warm-up failed: weights not found',
    ]);
    // What was built for the reload is closed; the running models are untouched.
    expect(backends.of("n")[0]?.closed).toBe(true);
    expect(backends.of("b")[1]?.closed).toBe(true);
    expect(backends.of("b")[0]?.closed).toBe(false);
    expect(engine.defaultModel).toBe("a");
    expect(engine.modelIds()).toEqual(["a", "b"]);
    expect((await infer("b")).action[0]).toBe(2);
    const text = await metrics.metrics();
    expect(text).toContain('vla_model_registry_reloads_total{outcome="model_warm_up_failed"} 1');
    await engine.reload(registry([entry("a"), entry("b")], "a"));
    expect(await metrics.metrics()).toContain('vla_model_registry_reloads_total{outcome="ok"} 1');
  });

  it("an invalid registry is refused with every problem and changes nothing", async () => {
    const { engine, backends, infer } = await setup(registry([entry("a")]));
    const source = () =>
      registry([entry("a", { action: { dim: 0, chunk: 1 } }), entry("b", { backend: { kind: "nope" } })], "zzz");
    const err = await engine.reload(source).catch((e: unknown) => e);
    expect((err as AppError).code).toBe("invalid_registry");
    const problems = (err as AppError).extensions.problems as string[];
    expect(problems.length).toBeGreaterThanOrEqual(2);
    expect(problems.some((p) => p.includes('model "a"'))).toBe(true);
    expect(problems.some((p) => p.includes('model "b"'))).toBe(true);
    expect(backends.created).toBe(1);
    expect((await infer("a")).action[0]).toBe(1);
    // The thrown RegistryError's own list, unchanged.
    expect(() => source()).toThrow(RegistryError);
  });
});

describe("engine.reload: models that cannot be built", () => {
  it("are all named in one invalid_registry; what was built is closed and nothing changes", async () => {
    const { engine, backends, infer } = await setup(registry([entry("a")]));
    backends.buildFail.set("x", "x/model.onnx: permission denied");
    backends.buildFail.set("z", "z/model.onnx: permission denied");
    const err = await engine
      .reload(registry([entry("a"), entry("x"), entry("y"), entry("z")], "a"))
      .catch((e: unknown) => e);
    expect((err as AppError).code).toBe("invalid_registry");
    expect((err as AppError).extensions.problems).toEqual([
      'model "x": x/model.onnx: permission denied',
      'model "z": z/model.onnx: permission denied',
    ]);
    expect(backends.of("y")[0]?.closed).toBe(true);
    expect(engine.modelIds()).toEqual(["a"]);
    expect((await infer("a")).action[0]).toBe(1);
  });
});

describe("engine.reload: drain", () => {
  it("replaced and removed models finish what was sent to them (running and queued), then close", async () => {
    const doc = registry([
      entry("a"),
      entry("b", { batching: { max_batch_size: 1, max_concurrent_batches: 1 } }),
      entry("c", { batching: { max_batch_size: 1, max_concurrent_batches: 1 } }),
    ]);
    const { engine, backends, infer } = await setup(doc);
    const gate = deferred();
    backends.hold.set("b", gate.promise);
    backends.hold.set("c", gate.promise);
    // Rebuild b and c so their instances hold in infer.
    await engine.reload(
      registry([
        entry("a"),
        entry("b", { description: "held", batching: { max_batch_size: 1, max_concurrent_batches: 1 } }),
        entry("c", { description: "held", batching: { max_batch_size: 1, max_concurrent_batches: 1 } }),
      ]),
    );
    backends.hold.clear();
    const heldB = backends.of("b")[1];
    const heldC = backends.of("c")[1];
    // One request running in each held backend, one more waiting in each queue.
    const sent = [infer("b"), infer("b"), infer("c"), infer("c")];
    await expect.poll(() => (heldB?.calls ?? 0) + (heldC?.calls ?? 0)).toBe(2);
    expect(engine.describe("b").stats.queue_depth).toBe(1);
    const change = await engine.reload(registry([entry("a"), entry("b", { description: "v3" })]));
    expect(change).toMatchObject({ changed: ["b"], removed: ["c"], unchanged: ["a"] });
    // New requests reach the new b; c is gone; the old instances still have work, so stay open.
    expect((await infer("b")).action[0]).toBe(backends.of("b")[2]?.n);
    expect(await codeOf(infer("c"))).toBe("unknown_model");
    expect(engine.draining).toBe(2);
    expect(heldB?.closed).toBe(false);
    expect(heldC?.closed).toBe(false);
    gate.resolve();
    const answers = await Promise.all(sent);
    expect(answers.map((r) => r.action[0])).toEqual([heldB?.n, heldB?.n, heldC?.n, heldC?.n]);
    await expect.poll(() => engine.draining).toBe(0);
    expect(heldB?.closed).toBe(true);
    expect(heldC?.closed).toBe(true);
  });

  it("a request that resolved its model before the swap still runs on it (submitted after the swap)", async () => {
    const { engine, backends, infer } = await setup(registry([entry("a"), entry("c")]));
    // The image decode (sharp, off the event loop) outlasts the reload, which only removes c:
    // the request enters c's queue after c left the registry.
    const pending = infer("c");
    const change = await engine.reload(registry([entry("a")]));
    expect(change.removed).toEqual(["c"]);
    expect(backends.of("c")[0]?.calls).toBe(0);
    expect((await pending).action[0]).toBe(backends.of("c")[0]?.n);
    await expect.poll(() => backends.of("c")[0]?.closed).toBe(true);
  });
});

describe("engine.reload: metrics", () => {
  it("the queue depth gauge is the serving instance's; a removed model's series goes", async () => {
    const metrics = new Registry();
    const one = { batching: { max_batch_size: 1, max_concurrent_batches: 1 } };
    const { engine, backends, infer } = await setup(registry([entry("a"), entry("b", one)]), metrics);
    const gate = deferred();
    backends.hold.set("b", gate.promise);
    await engine.reload(registry([entry("a"), entry("b", { ...one, description: "held" })]));
    backends.hold.clear();
    const sent = [infer("b"), infer("b"), infer("b")];
    await expect.poll(() => backends.of("b")[1]?.calls).toBe(1);
    expect(await metrics.metrics()).toContain('vla_model_queue_depth{model="b"} 2');
    await engine.reload(registry([entry("a"), entry("b", { ...one, description: "v3" })]));
    expect(await metrics.metrics()).toContain('vla_model_queue_depth{model="b"} 0');
    gate.resolve();
    await Promise.all(sent);
    await expect.poll(() => engine.draining).toBe(0);
    // The drained instance's queue emptied and closed without touching the gauge.
    expect(await metrics.metrics()).toContain('vla_model_queue_depth{model="b"} 0');
    await infer("a");
    await engine.reload(registry([entry("b", one)], "b"));
    expect(await metrics.metrics()).not.toContain('vla_model_queue_depth{model="a"}');
  });
});

describe("engine.reload: serialized, refused while shutting down", () => {
  it("reloads run one at a time, in order", async () => {
    const { engine, backends } = await setup(registry([entry("a")]));
    const gate = deferred();
    backends.warmGate.set("x", gate.promise);
    const first = engine.reload(registry([entry("a"), entry("x")]));
    const second = engine.reload(registry([entry("a"), entry("y")]));
    await expect.poll(() => backends.created).toBe(2);
    // The second has not started: y is not built while x warms up.
    expect(backends.of("y")).toHaveLength(0);
    gate.resolve();
    expect((await first).added).toEqual(["x"]);
    const s = await second;
    expect(s).toMatchObject({ added: ["y"], removed: ["x"], unchanged: ["a"] });
  });

  it("a reload after close is 503 shutting_down; one in progress at close is refused and its models closed", async () => {
    const { engine, backends } = await setup(registry([entry("a")]));
    const gate = deferred();
    backends.warmGate.set("x", gate.promise);
    const reloading = engine.reload(registry([entry("a"), entry("x")]));
    await expect.poll(() => backends.created).toBe(2);
    const closing = engine.close();
    gate.resolve();
    expect(await codeOf(reloading)).toBe("shutting_down");
    await closing;
    expect(backends.of("x")[0]?.closed).toBe(true);
    expect(backends.of("a")[0]?.closed).toBe(true);
    expect(await codeOf(engine.reload(registry([entry("a")])))).toBe("shutting_down");
  });
});
