import { describe, expect, it } from "vitest";
import type { CustomerModelRow } from "../../platform/db/schema/index.ts";
import type { InferenceEngine } from "../inference/inference.service.ts";
import { CUSTOMER_MODEL_LIMITS } from "./customer-model-definition.ts";
import type { CustomerModelsRepo } from "./customer-models.repo.ts";
import { CustomerModelsService } from "./customer-models.service.ts";
import { customerModelExample } from "./models.schemas.ts";
import type { ModelDefinition } from "./registry.ts";

const CUSTOMER = "3b9d0c1e-2f4a-4b5c-8d6e-7f8091a2b3c4";

/** customer_models in memory; `all()` can be held to hand out a snapshot taken before later changes. */
function memoryRepo() {
  const rows = new Map<string, CustomerModelRow>();
  let hold: { snapshot: CustomerModelRow[]; release: () => void } | undefined;
  const repo = {
    get: async (customerId: string, id: string) => rows.get(`${customerId}/${id}`),
    all: async () => {
      const snapshot = [...rows.values()];
      if (hold === undefined) return snapshot;
      await new Promise<void>((resolve) => {
        (hold as { release: () => void }).release = resolve;
      });
      return snapshot;
    },
  } as unknown as CustomerModelsRepo;
  return {
    repo,
    put(id: string, at: number, description = "v1", backend: Record<string, unknown> = {}) {
      const definition = {
        ...customerModelExample,
        id,
        description,
        backend: { ...customerModelExample.backend, ...backend },
      } as unknown as Record<string, unknown>;
      rows.set(`${CUSTOMER}/${id}`, {
        customerId: CUSTOMER,
        id,
        definition,
        createdAt: new Date(at),
        updatedAt: new Date(at),
      } as CustomerModelRow);
    },
    remove(id: string) {
      rows.delete(`${CUSTOMER}/${id}`);
    },
    holdAll() {
      hold = { snapshot: [], release: () => {} };
    },
    releaseAll() {
      hold?.release();
      hold = undefined;
    },
  };
}

function fakeEngine() {
  const served = new Set<string>();
  const descriptions = new Map<string, string>();
  const defs = new Map<string, ModelDefinition>();
  const engine = {
    putCustomerModel: async (customerId: string, def: ModelDefinition) => {
      served.add(`${customerId}/${def.id}`);
      descriptions.set(`${customerId}/${def.id}`, def.description);
      defs.set(`${customerId}/${def.id}`, def);
    },
    removeCustomerModel: async (customerId: string, id: string) => served.delete(`${customerId}/${id}`),
    customerModelIds: (customerId: string) =>
      [...served].filter((k) => k.startsWith(`${customerId}/`)).map((k) => k.slice(customerId.length + 1)),
  } as unknown as InferenceEngine;
  return { engine, served, descriptions, defs };
}

function service(
  repo: CustomerModelsRepo,
  engine: InferenceEngine,
  warn: (msg: string, fields: object) => void = () => {},
) {
  return new CustomerModelsService({
    repo,
    engine,
    egress: { policy: { allowHttp: false, allowedNetworks: [] }, resolver: async () => [] },
    maxModelsPerCustomer: 10,
    publish: async () => {},
    publishCustomer: async () => {},
    log: { warn: (fields, msg) => warn(msg, fields) },
  });
}

describe("CustomerModelsService keeps the engine in step with customer_models", () => {
  it("a reload of every row whose snapshot predates a delete does not bring the deleted model back", async () => {
    const db = memoryRepo();
    const { engine, served } = fakeEngine();
    const s = service(db.repo, engine);
    db.put("kitting", 1);
    await s.loadAll();
    expect([...served]).toEqual([`${CUSTOMER}/kitting`]);
    // Redis reconnects: loadAll reads every row (the model is still there)...
    db.holdAll();
    const reloading = s.loadAll();
    await new Promise((r) => setImmediate(r));
    // ...the customer deletes it on another instance, whose broadcast arrives here meanwhile...
    db.remove("kitting");
    await s.sync(CUSTOMER, "kitting");
    expect(served.size).toBe(0);
    // ...and the older snapshot arrives last: it must not serve the deleted model again.
    db.releaseAll();
    await reloading;
    expect(served.size).toBe(0);
    // A later reload of every row still loads what is there.
    db.put("sorting", 2);
    await s.loadAll();
    expect([...served]).toEqual([`${CUSTOMER}/sorting`]);
  });

  it("a change within the same millisecond as the previous one is served (updated_at has ms only)", async () => {
    const db = memoryRepo();
    const { engine, descriptions } = fakeEngine();
    const s = service(db.repo, engine);
    db.put("kitting", 1_000, "v1");
    await s.sync(CUSTOMER, "kitting");
    db.put("kitting", 1_000, "v2");
    await s.sync(CUSTOMER, "kitting");
    expect(descriptions.get(`${CUSTOMER}/kitting`)).toBe("v2");
  });

  it("a stored max_response_bytes above today's cap (registered when it was 8 MiB) is served with the cap, with a warning", async () => {
    const db = memoryRepo();
    const { engine, served, defs } = fakeEngine();
    const warnings: [string, object][] = [];
    const s = service(db.repo, engine, (msg, fields) => warnings.push([msg, fields]));
    db.put("big", 1, "v1", { max_response_bytes: 8 * 1024 * 1024 });
    db.put("small", 1, "v1", { max_response_bytes: 4096 });
    await s.loadAll();
    expect([...served].sort()).toEqual([`${CUSTOMER}/big`, `${CUSTOMER}/small`]);
    const bytes = (id: string) => {
      const b = defs.get(`${CUSTOMER}/${id}`)?.backend;
      return b?.kind === "openvla-http" ? b.maxResponseBytes : undefined;
    };
    expect(bytes("big")).toBe(CUSTOMER_MODEL_LIMITS.maxResponseBytes);
    expect(CUSTOMER_MODEL_LIMITS.maxResponseBytes).toBe(1024 * 1024);
    expect(bytes("small")).toBe(4096);
    expect(warnings).toEqual([
      [
        "customer model served with settings lowered to the current limits",
        { customerId: CUSTOMER, model: "big", adjusted: ["backend.max_response_bytes 8388608 lowered to 1048576"] },
      ],
    ]);
  });
});
