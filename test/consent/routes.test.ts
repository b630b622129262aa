import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedKey } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { auditRows, installConsentSessions, member, owner, SUPERUSER_ID, superuser, xKey } from "./helpers.ts";

let t: InferenceTestContext;
let admin: string; // the superuser's own customer
beforeAll(async () => {
  t = await buildInferenceApp();
  installConsentSessions(t.app);
  admin = (await newKey(t)).customerId;
});
afterAll(async () => {
  await t?.close();
});

type Json = Record<string, unknown>;
const put = (customerId: string, payload: Json, headers: Record<string, string> = owner(customerId)) =>
  t.app.inject({ method: "PUT", url: "/v1/consent", headers, payload });
const get = (customerId: string, query = "", headers: Record<string, string> = owner(customerId)) =>
  t.app.inject({ method: "GET", url: `/v1/consent${query}`, headers });
const HOUR = 3_600_000;

function problem(res: { statusCode: number; body: string; json(): unknown }, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json() as Json;
  expect(body.code).toBe(code);
  return body;
}

describe("self-service consent", () => {
  it("without any version: the default tier (basic), state default", async () => {
    const c = await newKey(t);
    const res = await get(c.customerId);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      customer_id: c.customerId,
      state: "default",
      tier: "basic",
      permissions: { store_instructions: true, store_images: false, store_embeddings: false, use_for_training: false },
      retention_days: 90,
      instruction_text_stored: true,
      record: null,
    });
  });

  it("PUT appends versions; permissions narrow the tier; history lists them newest first with a cursor", async () => {
    const c = await newKey(t);
    const first = await put(c.customerId, { tier: "research", policy_version: "2026-12-01" });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({
      state: "active",
      tier: "research",
      permissions: { store_instructions: true, store_images: true, store_embeddings: true, use_for_training: true },
      retention_days: 730,
      record: { version: 1, policy_version: "2026-12-01", withdrawn: false, ip: "127.0.0.1" },
    });
    t.clock.advance(1000);
    const second = await put(c.customerId, {
      tier: "analytics",
      permissions: { store_instructions: false },
      retention_days: 10,
      policy_version: "2026-12-02",
    });
    expect(second.json()).toMatchObject({
      tier: "analytics",
      permissions: { store_instructions: false, store_images: false, store_embeddings: true, use_for_training: false },
      retention_days: 10,
      instruction_text_stored: false,
      record: { version: 2 },
    });
    t.clock.advance(1000);
    await put(c.customerId, { tier: "basic", policy_version: "2026-12-02" });

    const page1 = await t.app.inject({
      method: "GET",
      url: "/v1/consent/history?limit=2",
      headers: owner(c.customerId),
    });
    expect(page1.statusCode, page1.body).toBe(200);
    const p1 = page1.json() as { data: { version: number }[]; next_cursor: string | null };
    expect(p1.data.map((v) => v.version)).toEqual([3, 2]);
    expect(p1.next_cursor).not.toBeNull();
    const page2 = await t.app.inject({
      method: "GET",
      url: `/v1/consent/history?limit=2&cursor=${p1.next_cursor}`,
      headers: owner(c.customerId),
    });
    const p2 = page2.json() as { data: { version: number }[]; next_cursor: string | null };
    expect(p2.data.map((v) => v.version)).toEqual([1]);
    expect(p2.next_cursor).toBeNull();
    const junk = await t.app.inject({
      method: "GET",
      url: "/v1/consent/history?cursor=bm9wZQ",
      headers: owner(c.customerId),
    });
    problem(junk, 400, "invalid_request");
  });

  it("answers what applied at a past instant, expiry judged at that instant", async () => {
    const c = await newKey(t);
    const t0 = t.clock.now();
    await put(c.customerId, {
      tier: "research",
      expires_at: new Date(t0 + 2 * HOUR).toISOString(),
      policy_version: "p1",
    });
    t.clock.advance(HOUR);
    await put(c.customerId, { tier: "none", policy_version: "p1" });
    t.clock.advance(2 * HOUR);
    await put(c.customerId, {
      tier: "basic",
      expires_at: new Date(t.clock.now() + HOUR).toISOString(),
      policy_version: "p2",
    });
    const at = async (ms: number) => (await get(c.customerId, `?at=${new Date(ms).toISOString()}`)).json() as Json;

    expect(await at(t0 - 1000)).toMatchObject({ state: "default", tier: "basic", record: null });
    expect(await at(t0 + 30 * 60_000)).toMatchObject({ state: "active", tier: "research", record: { version: 1 } });
    expect(await at(t0 + HOUR + 1000)).toMatchObject({ state: "active", tier: "none", record: { version: 2 } });
    expect(await at(t0 + 3 * HOUR + 1000)).toMatchObject({ state: "active", tier: "basic", record: { version: 3 } });
    // Version 3 expires an hour after it was granted: later instants see `expired`, which behaves as none.
    expect(await at(t0 + 5 * HOUR)).toMatchObject({
      state: "expired",
      tier: "none",
      permissions: { store_instructions: false },
      instruction_text_stored: false,
      record: { version: 3 },
    });
    t.clock.advance(2 * HOUR);
    expect((await get(c.customerId)).json()).toMatchObject({ state: "expired", tier: "none" });
  });

  it("refuses bad input with 422 and a clear message", async () => {
    const c = await newKey(t);
    const widen = problem(
      await put(c.customerId, { tier: "basic", permissions: { store_images: true }, policy_version: "p" }),
      422,
      "validation_failed",
    );
    expect(widen.errors).toEqual([
      {
        in: "body",
        path: "/permissions/store_images",
        message: "tier basic does not allow store_images; ask for tier research or leave it false",
      },
    ]);
    const cases: Json[] = [
      { tier: "basic", retention_days: 0, policy_version: "p" },
      { tier: "basic", retention_days: 4000, policy_version: "p" },
      { tier: "basic", permissions: { store_audio: true }, policy_version: "p" },
      { tier: "premium", policy_version: "p" },
      { tier: "basic", anonymization: "some", policy_version: "p" },
      { tier: "basic", expires_at: new Date(t.clock.now() - 1000).toISOString(), policy_version: "p" },
      { tier: "basic", expires_at: "yesterday", policy_version: "p" },
      { tier: "basic" },
      { tier: "basic", policy_version: "" },
      { tier: "basic", policy_version: "p", extra: 1 },
    ];
    for (const body of cases) problem(await put(c.customerId, body), 422, "validation_failed");
    // Nothing was stored.
    expect((await get(c.customerId)).json()).toMatchObject({ state: "default", record: null });
  });

  it("needs the owner (session or admin-scoped key): members and inference keys are 403, no auth 401", async () => {
    const c = await newKey(t);
    problem(await get(c.customerId, "", member(c.customerId)), 403, "forbidden");
    problem(await get(c.customerId, "", xKey(c.key)), 403, "forbidden");
    problem(await put(c.customerId, { tier: "none", policy_version: "p" }, xKey(c.key)), 403, "forbidden");
    problem(await t.app.inject({ method: "GET", url: "/v1/consent" }), 401, "unauthorized");
    const adminKey = await seedKey(t.database, c.customerId, { scopes: ["inference", "admin"] });
    const res = await put(c.customerId, { tier: "none", policy_version: "p" }, xKey(adminKey.key));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ record: { granted_by_api_key_id: adminKey.id, granted_by_user_id: null } });
  });

  it("writes an audit entry for each change (actor, action, request id, ip; never the content)", async () => {
    const c = await newKey(t);
    const res = await t.app.inject({
      method: "PUT",
      url: "/v1/consent",
      headers: { ...owner(c.customerId), "x-request-id": "req-consent-1" },
      payload: { tier: "basic", policy_version: "p" },
    });
    expect(res.statusCode).toBe(200);
    const [row] = await auditRows(t.database, c.customerId);
    expect(row).toMatchObject({
      action: "consent.grant",
      actorCustomerId: c.customerId,
      targetType: "customer",
      targetId: c.customerId,
      requestId: "req-consent-1",
      ip: "127.0.0.1",
      customerId: c.customerId,
      details: { version: 1 },
    });
  });
});

describe("superuser consent administration", () => {
  const url = (id: string, suffix = "") => `/admin/consent/${id}${suffix}`;

  it("POST, GET, PATCH, DELETE on a customer's consent, each audited", async () => {
    const c = await newKey(t);
    const h = { ...superuser(admin), "x-request-id": "req-admin-1" };
    const created = await t.app.inject({
      method: "POST",
      url: url(c.customerId),
      headers: h,
      payload: { tier: "analytics", retention_days: 200, policy_version: "paper-2026" },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({
      version: 1,
      tier: "analytics",
      retention_days: 200,
      granted_by_user_id: SUPERUSER_ID,
      permissions: { store_instructions: true, store_embeddings: true, store_images: false },
    });

    const patched = await t.app.inject({
      method: "PATCH",
      url: url(c.customerId),
      headers: h,
      payload: { permissions: { store_instructions: false } },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    // Unchanged fields come from version 1.
    expect(patched.json()).toMatchObject({
      version: 2,
      tier: "analytics",
      retention_days: 200,
      policy_version: "paper-2026",
      permissions: { store_instructions: false, store_embeddings: true },
    });
    // A new tier without permissions: the new tier's defaults (and its default retention).
    const raised = await t.app.inject({
      method: "PATCH",
      url: url(c.customerId),
      headers: h,
      payload: { tier: "research" },
    });
    expect(raised.json()).toMatchObject({
      version: 3,
      retention_days: 730,
      permissions: { store_instructions: true, store_images: true, use_for_training: true },
    });
    // Narrowing the tier below a permission given explicitly is refused, not clamped.
    problem(
      await t.app.inject({
        method: "PATCH",
        url: url(c.customerId),
        headers: h,
        payload: { tier: "basic", permissions: { use_for_training: true } },
      }),
      422,
      "validation_failed",
    );

    const read = await t.app.inject({ method: "GET", url: url(c.customerId), headers: h });
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json()).toMatchObject({ customer_id: c.customerId, tier: "research", record: { version: 3 } });
    const hist = await t.app.inject({ method: "GET", url: url(c.customerId, "/history"), headers: h });
    expect((hist.json() as { data: unknown[] }).data).toHaveLength(3);

    const withdrawn = await t.app.inject({ method: "DELETE", url: url(c.customerId), headers: h });
    expect(withdrawn.statusCode, withdrawn.body).toBe(200);
    expect(withdrawn.json()).toMatchObject({
      version: 4,
      tier: "none",
      withdrawn: true,
      policy_version: "paper-2026",
      permissions: { store_instructions: false, store_images: false, store_embeddings: false, use_for_training: false },
    });
    expect((await get(c.customerId)).json()).toMatchObject({ state: "withdrawn", tier: "none" });

    const audit = await auditRows(t.database, c.customerId);
    expect(audit.map((r) => r.action).sort()).toEqual(
      [
        "consent.admin_grant",
        "consent.admin_change",
        "consent.admin_change",
        "consent.admin_read",
        "consent.admin_read_history",
        "consent.admin_withdraw",
      ].sort(),
    );
    for (const r of audit) {
      expect(r).toMatchObject({
        actorUserId: SUPERUSER_ID,
        actorCustomerId: admin,
        targetType: "customer",
        targetId: c.customerId,
        requestId: "req-admin-1",
      });
      expect(r).toMatchObject({ ip: "127.0.0.1", customerId: c.customerId });
      expect(JSON.stringify(r.details)).not.toContain("paper-2026");
    }
  });

  it("is 403 for anyone but a superuser, 404 for an unknown customer, 4xx for a malformed id", async () => {
    const c = await newKey(t);
    for (const method of ["GET", "POST", "PATCH", "DELETE"] as const) {
      const payload = method === "POST" || method === "PATCH" ? { tier: "none", policy_version: "p" } : undefined;
      const as = (headers: Record<string, string>, id = c.customerId) =>
        t.app.inject({ method, url: url(id), headers, ...(payload === undefined ? {} : { payload }) });
      problem(await as(owner(c.customerId)), 403, "forbidden");
      problem(await as(xKey(c.key)), 403, "forbidden");
      problem(await as({}), 401, "unauthorized");
      problem(await as(superuser(admin), randomUUID()), 404, "not_found");
      const bad = await as(superuser(admin), "not-a-uuid");
      expect(bad.statusCode).toBe(400);
    }
    // None of it wrote a version.
    expect((await get(c.customerId)).json()).toMatchObject({ state: "default" });
  });
});

describe("erasure", () => {
  it("the customer's consent versions go with the customer; the audit entries stay", async () => {
    const [c, keep] = [await newKey(t), await newKey(t)];
    for (const k of [c, keep]) {
      await put(k.customerId, { tier: "research", policy_version: "p" });
      await put(k.customerId, { tier: "none", policy_version: "p" });
    }
    const platform = t.app.platform;
    expect(platform.deletion.names).toContain("consent");
    const userOnly = await t.database.db.transaction((tx) =>
      platform.deletion.run({ tx, userId: randomUUID(), customerId: c.customerId }, false),
    );
    expect(userOnly.customer_data_consent).toBeUndefined();
    const counts = await t.database.db.transaction((tx) =>
      platform.deletion.run({ tx, userId: randomUUID(), customerId: c.customerId }, true),
    );
    expect(counts.customer_data_consent).toBe(2);
    const { ConsentRepo } = await import("../../src/modules/consent/consent.repo.ts");
    const repo = new ConsentRepo(t.database.db);
    expect(await repo.history(c.customerId, undefined, 10)).toEqual([]);
    expect(await repo.history(keep.customerId, undefined, 10)).toHaveLength(2);
    expect((await auditRows(t.database, c.customerId)).map((r) => r.action)).toEqual([
      "consent.grant",
      "consent.grant",
    ]);
  });
});
