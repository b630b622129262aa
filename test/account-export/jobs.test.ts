import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { exportServices } from "../../src/modules/account-export/export.module.ts";
import { type InferenceLogEntry, InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import { accountExports, customers } from "../../src/platform/db/schema/index.ts";
import type { ModulePlugin } from "../../src/platform/module.ts";
import { bearer, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { buildBillingApp } from "../billing/helpers.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { ndjson, untar } from "./helpers.ts";

/** A section that blocks until the test opens the gate: holds a job in `running`. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  let entered!: () => void;
  const reached = new Promise<void>((resolve) => {
    entered = resolve;
  });
  const plugin: ModulePlugin = async (_app, { platform }) => {
    platform.exports.register({
      name: "gate",
      file: "gate.ndjson",
      async *rows() {
        entered();
        await opened;
        yield { gate: "open" };
      },
    });
  };
  return { plugin, open, reached };
}

const serviceOf = (t: TestContext) => {
  const s = exportServices.get(t.app.platform);
  if (s === undefined) throw new Error("export module not registered");
  return s;
};

describe("export jobs", () => {
  const g = gate();
  let t: TestContext;
  let owner: Session;
  beforeAll(async () => {
    t = await buildTestApp({ plugins: [g.plugin], env: { MODELS_WARM_UP: "false" } });
    owner = await signUp(t, "exp-jobs");
  });
  afterAll(async () => {
    g.open();
    await t?.close();
  });

  it("a second request while one runs is 409 export_in_progress naming the running job", async () => {
    const first = await t.app.inject({ method: "POST", url: "/v1/account/export", headers: bearer(owner.access) });
    expect(first.statusCode, first.body).toBe(202);
    const id = (first.json() as { id: string }).id;
    await g.reached;
    const running = await t.app.inject({
      method: "GET",
      url: `/v1/account/export/${id}`,
      headers: bearer(owner.access),
    });
    expect(running.json()).toMatchObject({ status: "running", download_url: null });
    expectProblem(
      await t.app.inject({ method: "GET", url: `/v1/account/export/${id}/download`, headers: bearer(owner.access) }),
      409,
      "export_not_ready",
    );
    const second = await t.app.inject({ method: "POST", url: "/v1/account/export", headers: bearer(owner.access) });
    const problem = expectProblem(second, 409, "export_in_progress");
    expect(problem.export_id).toBe(id);
    expect(second.headers.location).toBe(`/v1/account/export/${id}`);

    // A restart while it runs: the new process fails the job it cannot finish.
    const restarted = await buildTestApp({ database: t.database, env: { MODELS_WARM_UP: "false" } });
    try {
      const [row] = await t.database.db.select().from(accountExports).where(eq(accountExports.id, id));
      expect(row?.status).toBe("failed");
      expect(row?.error).toMatch(/^interrupted/);
    } finally {
      await restarted.close();
    }
    // The old process finishing late does not resurrect it, and leaves no archive.
    g.open();
    await serviceOf(t).idle();
    const after = await t.app.inject({ method: "GET", url: `/v1/account/export/${id}`, headers: bearer(owner.access) });
    expect(after.json()).toMatchObject({ status: "failed", download_url: null });
    const again = await t.app.inject({ method: "POST", url: "/v1/account/export", headers: bearer(owner.access) });
    expect(again.statusCode, again.body).toBe(202);
    await serviceOf(t).idle();
  });
});

describe("streaming inference logs", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await buildTestApp({ env: { MODELS_WARM_UP: "false", EXPORT_BATCH_ROWS: "100" } });
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await t?.close();
  });

  it("pages through the logs with a keyset cursor, EXPORT_BATCH_ROWS at a time, none skipped or repeated", async () => {
    const owner = await signUp(t, "exp-stream");
    const base = Date.now() - 3_600_000;
    // 250 rows, five per millisecond (microseconds apart), so pages end inside a millisecond.
    const rows: InferenceLogEntry[] = Array.from({ length: 250 }, (_, i) => ({
      id: randomUUID(),
      createdAt: new Date(base + Math.floor(i / 5)).toISOString().replace("Z", `${String(i % 5).padStart(3, "0")}Z`),
      customerId: owner.customerId,
      apiKeyId: null,
      userId: null,
      model: "mock-openvla-7b",
      backend: "mock",
      robotId: null,
      instruction: null,
      instructionSha256: null,
      imageSha256: null,
      action: null,
      actionChunk: null,
      unnormKey: null,
      status: "error",
      errorCode: "invalid_image",
      preprocessMs: null,
      queueMs: null,
      modelMs: null,
      totalMs: 1,
      source: "rest",
      safetyStatus: null,
    }));
    await new InferenceLogsRepo(t.database.db).insertMany(rows);
    const spy = vi.spyOn(InferenceLogsRepo.prototype, "exportPage");
    const res = await t.app.inject({ method: "POST", url: "/v1/account/export", headers: bearer(owner.access) });
    expect(res.statusCode).toBe(202);
    await serviceOf(t).idle();
    const id = (res.json() as { id: string }).id;
    // Three pages of at most 100 rows (100, 100, 50): the job never asked for the whole table.
    expect(spy.mock.calls.map((c) => c[2])).toEqual([100, 100, 100]);
    expect(spy.mock.calls[0]?.[1]).toBeUndefined();
    expect(spy.mock.calls[1]?.[1]).toBeDefined();
    const dl = await t.app.inject({
      method: "GET",
      url: `/v1/account/export/${id}/download`,
      headers: bearer(owner.access),
    });
    const logs = ndjson(untar(dl.rawPayload).get("inference_logs.ndjson"));
    expect(logs.map((l) => l.id)).toEqual(rows.map((r) => r.id));
  });
});

describe("invoices section", () => {
  it("lists the customer's Stripe invoices, and writes an error line when Stripe is down", async () => {
    const t = await buildBillingApp();
    try {
      const owner = await signUp(t, "exp-bill");
      const cus = t.fake.state.putCustomer({});
      await t.database.db
        .update(customers)
        .set({ stripeCustomerId: cus.id as string })
        .where(eq(customers.id, owner.customerId));
      const inv = t.fake.state.putInvoice({ customer: cus.id as string, amountDue: 4900, amountPaid: 4900 });
      const run = async () => {
        const res = await t.app.inject({ method: "POST", url: "/v1/account/export", headers: bearer(owner.access) });
        expect(res.statusCode, res.body).toBe(202);
        await serviceOf(t).idle();
        const id = (res.json() as { id: string }).id;
        const st = await t.app.inject({
          method: "GET",
          url: `/v1/account/export/${id}`,
          headers: bearer(owner.access),
        });
        expect(st.json()).toMatchObject({ status: "done" });
        const dl = await t.app.inject({
          method: "GET",
          url: `/v1/account/export/${id}/download`,
          headers: bearer(owner.access),
        });
        return ndjson(untar(dl.rawPayload).get("invoices.ndjson"));
      };
      const ok = await run();
      expect(ok).toHaveLength(1);
      expect(ok[0]).toMatchObject({ id: inv.id, amount_paid: 4900 });

      t.fake.setDown(true);
      const down = await run();
      expect(down).toEqual([expect.objectContaining({ error: "billing_unavailable" })]);
    } finally {
      await t.close();
    }
  });
});
