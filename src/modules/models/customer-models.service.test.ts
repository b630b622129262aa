import { describe, expect, it } from "vitest";
import type { CustomerModelRow } from "../../platform/db/schema/index.ts";
import type { InferenceEngine } from "../inference/inference.service.ts";
import type { CustomerModelsRepo } from "./customer-models.repo.ts";
import { CustomerModelsService } from "./customer-models.service.ts";
import { customerModelExample } from "./models.schemas.ts";

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
    put(id: string, at: number, description = "v1") {
      const definition = { ...customerModelExample, id, description } as unknown as Record<string, unknown>;
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
  const engine = {
    putCustomerModel: async (customerId: string, def: { id: string; description: string }) => {
      served.add(`${customerId}/${def.id}`);
      descriptions.set(`${customerId}/${def.id}`, def.description);
    },
    removeCustomerModel: async (customerId: string, id: string) => served.delete(`${customerId}/${id}`),
    customerModelIds: (customerId: string) =>
      [...served].filter((k) => k.startsWith(`${customerId}/`)).map((k) => k.slice(customerId.length + 1)),
  } as unknown as InferenceEngine;
  return { engine, served, descriptions };
}

function service(repo: CustomerModelsRepo, engine: InferenceEngine) {
  return new CustomerModelsService({
    repo,
    engine,
    egress: { policy: { allowHttp: false, allowedNetworks: [] }, resolver: async () => [] },
    maxModelsPerCustomer: 10,
    publish: async () => {},
    publishCustomer: async () => {},
    log: { warn() {} },
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
});
