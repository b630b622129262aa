import { randomUUID } from "node:crypto";
import { Registry } from "prom-client";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEngineMetrics } from "../../src/modules/inference/engine-metrics.ts";
import { InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { MockBackend } from "../../src/modules/models/backends/mock.ts";
import type { ModelBackend } from "../../src/modules/models/backends/types.ts";
import { type ModelDefinition, PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { AppError } from "../../src/platform/errors.ts";
import { jpeg } from "../engine/helpers.ts";

/**
 * The engine's map of customer-registered models (the service loads them; here they are put
 * directly, with mock backends): private to their customer, the customer's own wins for it on a
 * shared id, replaced or removed models are closed.
 */

const A = { customerId: randomUUID(), isSuperuser: false };
const B = { customerId: randomUUID(), isSuperuser: false };
const superOfC = { customerId: randomUUID(), isSuperuser: true };

const entry = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  backend: { kind: "mock" },
  action: { dim: 7, chunk: 1 },
  dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
  default_unnorm_key: "bridge_orig",
  ...extra,
});
const defs = (...entries: unknown[]) => parseRegistry({ models: entries }, PROJECT_ROOT).models;
const one = (id: string, extra: Record<string, unknown> = {}) => defs(entry(id, extra))[0] as ModelDefinition;

let image: Buffer;
beforeAll(async () => {
  image = await jpeg(32, 32, 1);
});

let closed: string[] = [];
let metrics: Registry;
let engine: InferenceEngine;
function build(): InferenceEngine {
  metrics = new Registry();
  closed = [];
  engine = new InferenceEngine(
    {
      defaultModel: "public",
      models: defs(entry("public"), entry("restricted", { access: { customers: [B.customerId] } })),
    },
    {
      metrics: createEngineMetrics(metrics),
      backendFactory: (def): ModelBackend => {
        const mock = new MockBackend({ actionDim: 7, chunk: 1, latencyMs: 0, perItemMs: 0 });
        return Object.assign(Object.create(mock) as ModelBackend, {
          kind: mock.kind,
          infer: mock.infer.bind(mock),
          health: mock.health.bind(mock),
          warmUp: mock.warmUp.bind(mock),
          close: async () => {
            closed.push(`${def.id}:${def.description}`);
          },
        });
      },
    },
  );
  return engine;
}
afterEach(async () => {
  await engine?.close();
});

const infer = (viewer: typeof A | undefined, model: string) =>
  engine.infer({ model, imageBytes: image, instruction: "go", customerId: viewer?.customerId ?? "x", viewer });

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
  return undefined;
}

describe("customer models in the engine", () => {
  it("serve only their customer; others (superusers included) and internal calls get unknown_model", async () => {
    build();
    await engine.putCustomerModel(A.customerId, one("mine"));
    const r = await infer(A, "mine");
    expect(r).toMatchObject({ model: "mine", owner: "customer" });
    expect(engine.list(A).map((m) => [m.id, m.owner])).toEqual([
      ["public", "operator"],
      ["mine", "customer"],
    ]);
    expect(engine.list(B).map((m) => m.id)).toEqual(["public", "restricted"]);
    for (const viewer of [B, superOfC, undefined]) expect(await code(infer(viewer, "mine"))).toBe("unknown_model");
    try {
      await infer(B, "mine");
    } catch (e) {
      expect((e as AppError).extensions.available_models).toEqual(["public", "restricted"]);
    }
    // Metrics label customer models "customer", never by their (customer-chosen) id.
    const text = await metrics.metrics();
    expect(text).toContain('model="customer"');
    expect(text).not.toContain('model="mine"');
  });

  it("on a shared id the customer's own model wins for it; other customers get the registry's", async () => {
    build();
    await engine.putCustomerModel(A.customerId, one("restricted", { description: "A's" }));
    expect((await infer(A, "restricted")).owner).toBe("customer");
    expect((await infer(B, "restricted")).owner).toBeUndefined();
  });

  it("a reload that adds a registry model of a customer model's id does not take that customer's traffic", async () => {
    build();
    await engine.putCustomerModel(A.customerId, one("kitting", { description: "A's" }));
    await engine.reload({ defaultModel: "public", models: defs(entry("public"), entry("kitting")) });
    // A's robots keep their own endpoint; A sees its own model once, as its own.
    expect(await infer(A, "kitting")).toMatchObject({ model: "kitting", owner: "customer" });
    expect(engine.describe("kitting", A)).toMatchObject({ owner: "customer", description: "A's" });
    expect(engine.serves("kitting", A)).toBe(true);
    expect(engine.list(A).map((m) => [m.id, m.owner])).toEqual([
      ["public", "operator"],
      ["kitting", "customer"],
    ]);
    // Everyone else gets the service's new model.
    expect((await infer(B, "kitting")).owner).toBeUndefined();
    expect(engine.list(B).map((m) => [m.id, m.owner])).toContainEqual(["kitting", "operator"]);
  });

  it("replacing closes the old backend; removing closes the current one", async () => {
    build();
    await engine.putCustomerModel(A.customerId, one("mine", { description: "v1" }));
    await engine.putCustomerModel(A.customerId, one("mine", { description: "v2" }));
    expect(closed).toEqual(["mine:v1"]);
    expect(engine.describe("mine", A).description).toBe("v2");
    expect(await engine.removeCustomerModel(A.customerId, "mine")).toBe(true);
    expect(closed).toEqual(["mine:v1", "mine:v2"]);
    expect(await engine.removeCustomerModel(A.customerId, "mine")).toBe(false);
    expect(await code(infer(A, "mine"))).toBe("unknown_model");
  });

  it("close() closes customer models too", async () => {
    build();
    await engine.putCustomerModel(B.customerId, one("theirs", { description: "b" }));
    await engine.close();
    expect(closed).toContain("theirs:b");
  });
});
