import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminCustomersRepos } from "../../src/modules/admin/customers.module.ts";
import { safetyServices } from "../../src/modules/safety/safety.module.ts";
import {
  auditLog,
  customers,
  safetyIncidents,
  usageCounters,
  usageHourlyMetrics,
} from "../../src/platform/db/schema/index.ts";
import { type AuthContext, bearer, buildAuthApp, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { adminScopeKey, expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

const NIL = "00000000-0000-0000-0000-000000000000";
let t: AuthContext;
let root: Session;

beforeAll(async () => {
  t = await buildAuthApp();
  root = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string, s: Session = root) => t.app.inject({ method: "GET", url, headers: bearer(s.access) });
const refresh = () =>
  (adminCustomersRepos.get(t.app.platform) as NonNullable<ReturnType<typeof adminCustomersRepos.get>>).refreshMetrics(
    new Date(),
  );
const setCustomer = (id: string, set: Partial<typeof customers.$inferInsert>) =>
  t.database.db.update(customers).set(set).where(eq(customers.id, id));
const auditOf = (customerId: string, action: string) =>
  t.database.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.customerId, customerId), eq(auditLog.action, action)));

interface Item {
  id: string;
  [k: string]: unknown;
}

/** Every item of the list, following next_cursor with pages of `limit`. */
async function all(query: string, limit: number): Promise<Item[]> {
  const out: Item[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 200; i++) {
    const res = await get(`/admin/customers?${query}&limit=${limit}${cursor === null ? "" : `&cursor=${cursor}`}`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as { data: Item[]; next_cursor: string | null };
    out.push(...body.data);
    cursor = body.next_cursor;
    if (cursor === null) return out;
  }
  throw new Error("no end");
}

describe("superusers only", () => {
  it("every route refuses anonymous callers, customer owners and admin-scope keys", async () => {
    const owner = await signUp(t, "plain");
    const before = await t.database.db.select().from(customers).where(eq(customers.id, owner.customerId));
    await expectSuperuserOnly(t, owner, [
      { method: "GET", url: "/admin/customers" },
      { method: "GET", url: `/admin/customers/${owner.customerId}` },
      {
        method: "POST",
        url: `/admin/customers/${owner.customerId}/tier`,
        payload: { tier: "enterprise", reason: "x" },
      },
      { method: "PATCH", url: `/admin/customers/${owner.customerId}/limits`, payload: { quota_per_day: 5 } },
    ]);
    const after = await t.database.db.select().from(customers).where(eq(customers.id, owner.customerId));
    expect(after[0]?.tier).toBe(before[0]?.tier);
    expect(after[0]?.quotaPerDay).toBeNull();
  });
});

describe("GET /admin/customers", () => {
  const tag = randomBytes(3).toString("hex");
  const made: Session[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 5; i++) made.push(await signUp(t, `list${tag}`));
    const [a, b, c, d, e] = made as [Session, Session, Session, Session, Session];
    const sameInstant = new Date("2026-11-01T00:00:00Z");
    // Ties on created_at: keyset paging must neither repeat nor skip them.
    for (const s of [a, b, c]) await setCustomer(s.customerId, { createdAt: sameInstant });
    await setCustomer(a.customerId, { company: `Zeta ${tag} Robotics`, tier: "pro" });
    await setCustomer(b.customerId, { name: `Beta ${tag.toUpperCase()} Labs` });
    await setCustomer(c.customerId, { suspendedAt: new Date(), suspendedReason: "abuse" });
    await setCustomer(d.customerId, {
      subscriptionStatus: "active",
      subscriptionUnitAmount: 12_000,
      subscriptionInterval: "year",
      subscriptionCurrency: "usd",
      // What the billing webhook writes with these fields (monthlyAmount: yearly / 12).
      mrrMinor: 1_000,
    });
    await setCustomer(e.customerId, {
      subscriptionStatus: "active",
      subscriptionUnitAmount: 4_900,
      subscriptionInterval: "month",
      subscriptionCurrency: "usd",
      mrrMinor: 4_900,
    });
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000);
    const old = new Date(hour.getTime() - 40 * 86_400_000);
    const usage = (customerId: string, at: Date, requests: number) => ({
      customerId,
      hour: at,
      model: "m",
      source: "rest",
      apiKeyId: NIL,
      requests,
    });
    await t.database.db
      .insert(usageHourlyMetrics)
      .values([usage(b.customerId, hour, 30), usage(c.customerId, hour, 20), usage(a.customerId, old, 999)]);
    await refresh();
  });

  it("q matches email, name or company case-insensitively; tier and status filter", async () => {
    const byQ = await all(`q=${tag.toUpperCase()}`, 100);
    expect(byQ.map((i) => i.id).sort()).toEqual(made.map((s) => s.customerId).sort());
    const company = await all(`q=zeta%20${tag}`, 100);
    expect(company.map((i) => i.id)).toEqual([made[0]?.customerId]);
    const name = await all(`q=beta%20${tag}`, 100);
    expect(name.map((i) => i.id)).toEqual([made[1]?.customerId]);
    const pro = await all(`q=${tag}&tier=pro`, 100);
    expect(pro.map((i) => i.id)).toEqual([made[0]?.customerId]);
    const suspended = await all(`q=${tag}&status=suspended`, 100);
    expect(suspended.map((i) => i.id)).toEqual([made[2]?.customerId]);
    expect(suspended[0]).toMatchObject({ status: "suspended", suspended: { reason: "abuse" } });
    expect(await all(`q=${tag}&status=active`, 100)).toHaveLength(4);
    // LIKE metacharacters are plain text.
    expect(await all("q=%25", 100)).toHaveLength(0);
  });

  it("pages by created_at through ties without repeats or gaps, both orders", async () => {
    const desc = await all(`q=${tag}&sort=created_at`, 1);
    expect(desc.map((i) => i.id).sort()).toEqual(made.map((s) => s.customerId).sort());
    const asc = await all(`q=${tag}&sort=created_at&order=asc`, 2);
    expect(asc.map((i) => i.id)).toEqual(desc.map((i) => i.id).reverse());
  });

  it("sorts by requests over 30 days (rollups, old hours excluded) and by MRR (yearly / 12)", async () => {
    const [a, b, c, d, e] = made.map((s) => s.customerId);
    const byRequests = await all(`q=${tag}&sort=requests_30d`, 2);
    expect(byRequests.slice(0, 2).map((i) => [i.id, i.requests_30d])).toEqual([
      [b, 30],
      [c, 20],
    ]);
    expect(byRequests.find((i) => i.id === a)?.requests_30d).toBe(0);
    const byMrr = await all(`q=${tag}&sort=mrr`, 1);
    expect(byMrr.slice(0, 2).map((i) => [i.id, i.mrr])).toEqual([
      [e, 4900],
      [d, 1000],
    ]);
    const asc = await all(`q=${tag}&sort=mrr&order=asc`, 3);
    expect(asc.map((i) => i.id)).toEqual(byMrr.map((i) => i.id).reverse());
  });

  it("reports members, active keys, requests this month and last activity", async () => {
    const s = made[3] as Session;
    await adminScopeKey(t, s);
    const month = `${new Date().toISOString().slice(0, 7)}-01`;
    await t.database.db.insert(usageCounters).values({ customerId: s.customerId, month, requests: 77 });
    const [item] = (await all(`q=${s.email}`, 10)) as [Item];
    expect(item).toMatchObject({ members: 1, active_keys: 1, requests_this_month: 77, tier: "free" });
    expect(item.last_activity_at).not.toBeNull(); // the sign-in
  });

  it("rejects bad parameters and cursors with 400 invalid_request", async () => {
    const first = (await get(`/admin/customers?q=${tag}&limit=1&sort=mrr`)).json() as { next_cursor: string };
    for (const url of [
      "/admin/customers?sort=name",
      "/admin/customers?order=up",
      "/admin/customers?limit=0",
      "/admin/customers?limit=101",
      "/admin/customers?limit=abc",
      "/admin/customers?tier=gold",
      "/admin/customers?status=deleted",
      "/admin/customers?unknown=1",
      "/admin/customers?cursor=not-a-cursor",
      `/admin/customers?cursor=${Buffer.from('["mrr","desc",-1,"x"]').toString("base64url")}`,
      // A cursor of another sort or order.
      `/admin/customers?q=${tag}&sort=created_at&cursor=${first.next_cursor}`,
      `/admin/customers?q=${tag}&sort=mrr&order=asc&cursor=${first.next_cursor}`,
    ]) {
      expectProblem(await get(url), 400, "invalid_request");
    }
  });
});

describe("GET /admin/customers/{id}", () => {
  it("returns the customer in full, without secrets, and audits the read", async () => {
    const s = await signUp(t, "detail");
    await adminScopeKey(t, s);
    const now = new Date();
    const hour = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
    const yesterday = new Date(hour.getTime() - 86_400_000);
    await t.database.db.insert(usageHourlyMetrics).values([
      { customerId: s.customerId, hour, model: "m", source: "rest", apiKeyId: NIL, requests: 5, errors: 1 },
      { customerId: s.customerId, hour: yesterday, model: "m", source: "rest", apiKeyId: NIL, requests: 7 },
    ]);
    await t.database.db.insert(safetyIncidents).values([
      {
        customerId: s.customerId,
        robotId: "r1",
        violationType: "workspace",
        severity: "high",
        actionTaken: "rejected",
      },
      {
        customerId: s.customerId,
        robotId: "r1",
        violationType: "workspace",
        severity: "high",
        actionTaken: "rejected",
      },
      { customerId: s.customerId, robotId: "r1", violationType: "speed", severity: "low", actionTaken: "clamped" },
    ]);
    await setCustomer(s.customerId, { rateLimitPerMinute: 42 });

    const res = await get(`/admin/customers/${s.customerId}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).not.toMatch(/password|key_hash|\$argon|\$scrypt/i);
    const body = res.json();
    expect(body.customer).toMatchObject({ id: s.customerId, email: s.email, tier: "free", status: "active" });
    expect(body.members).toEqual([expect.objectContaining({ id: s.userId, role: "owner", email: s.email })]);
    expect(body.keys).toEqual([expect.objectContaining({ name: "customer-admin", status: "active" })]);
    expect(body.keys[0].prefix).toMatch(/^vla_live_/);
    expect(body.limits).toEqual({
      tier_defaults: { rate_limit_per_minute: 10, quota_per_day: 1000, quota_per_month: 10000 },
      overrides: { rate_limit_per_minute: 42, quota_per_day: null, quota_per_month: null },
      effective: { rate_limit_per_minute: 42, quota_per_day: 1000, quota_per_month: 10000, overage_cap_requests: null },
    });
    expect(body.usage.today).toEqual({ requests: 5, errors: 1 });
    expect(body.usage.last_30_days).toHaveLength(30);
    expect(body.usage.last_30_days[29]).toEqual({ day: now.toISOString().slice(0, 10), requests: 5, errors: 1 });
    expect(body.usage.last_30_days[28]).toMatchObject({ requests: 7 });
    expect(body.incidents_by_severity).toEqual({ low: 1, medium: 0, high: 2, critical: 0 });
    expect(body.emergency_stops).toEqual([]);
    expect(body.subscription).toMatchObject({ status: null, mrr: 0 });
    expect(body.invoices).toEqual({ past_due: false, latest_synced_at: null });
    expect(body.consent).toMatchObject({ state: "default", version: null, withdrawn: false });

    const reads = await auditOf(s.customerId, "customer.read");
    expect(reads).toHaveLength(1);
    expect(reads[0]).toMatchObject({ actorUserId: root.userId, targetId: s.customerId });
    expect(reads[0]?.details).toMatchObject({ superuser: true });
  });

  it("shows the consent module's current record", async () => {
    const s = await signUp(t, "consent");
    const grant = await t.app.inject({
      method: "PUT",
      url: "/v1/consent",
      headers: bearer(s.access),
      payload: { tier: "analytics", policy_version: "2026-12-01" },
    });
    expect(grant.statusCode, grant.body).toBeLessThan(300);
    const body = (await get(`/admin/customers/${s.customerId}`)).json();
    expect(body.consent).toMatchObject({ state: "active", tier: "analytics", version: 1 });
  });

  it("lists the customer's open emergency stops from the safety module", async () => {
    const s = await signUp(t, "estop");
    const safety = safetyServices.get(t.app.platform);
    if (safety === undefined) throw new Error("no safety service");
    // The registry the safety gate writes when an action triggers an emergency stop.
    // biome-ignore lint/complexity/useLiteralKeys: the private registry, reached on purpose (TS allows it only so)
    await safety["o"].estops.stop(s.customerId, "arm-9", { at: "2026-12-05T10:00:00.000Z", reason: "keep-out zone" });
    const body = (await get(`/admin/customers/${s.customerId}`)).json();
    expect(body.emergency_stops).toEqual([
      { robot_id: "arm-9", at: "2026-12-05T10:00:00.000Z", reason: "keep-out zone", inference_id: null },
    ]);
  });

  it("400 for a malformed id, 404 for an unknown customer", async () => {
    expectProblem(await get("/admin/customers/not-a-uuid"), 400, "invalid_request");
    expectProblem(await get(`/admin/customers/${NIL}`), 404, "not_found");
  });
});

describe("POST /admin/customers/{id}/tier", () => {
  const post = (id: string, payload: unknown) =>
    t.app.inject({
      method: "POST",
      url: `/admin/customers/${id}/tier`,
      headers: bearer(root.access),
      payload: payload as Record<string, unknown>,
    });

  it("changes the tier, audits it with the reason in the same change, and the limiter sees it", async () => {
    const s = await signUp(t, "tier");
    const limits = t.app.platform.limits.customerLimits;
    expect((await limits.get(s.customerId)).tier).toBe("free"); // cached now
    const res = await post(s.customerId, { tier: "enterprise", reason: "contract #4411" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ customer_id: s.customerId, from: "free", tier: "enterprise" });
    expect(res.json().limits.effective.rate_limit_per_minute).toBe(1000);
    expect((await limits.get(s.customerId)).tier).toBe("enterprise");
    const [entry, ...more] = await auditOf(s.customerId, "customer.tier_change");
    expect(more).toHaveLength(0);
    expect(entry).toMatchObject({
      actorUserId: root.userId,
      targetType: "customer",
      requestId: res.headers["x-request-id"],
      details: { from: "free", to: "enterprise", reason: "contract #4411", source: "admin_api" },
    });
  });

  it("rejects bad input and unknown customers", async () => {
    const s = await signUp(t, "tierbad");
    for (const body of [
      { tier: "gold", reason: "x" },
      { tier: "pro" },
      { tier: "pro", reason: "" },
      { tier: "pro", reason: "x", extra: 1 },
      {},
    ]) {
      expectProblem(await post(s.customerId, body), 422, "validation_failed");
    }
    expectProblem(await post("nope", { tier: "pro", reason: "x" }), 400, "invalid_request");
    expectProblem(await post(NIL, { tier: "pro", reason: "x" }), 404, "not_found");
    expect(await auditOf(s.customerId, "customer.tier_change")).toHaveLength(0);
  });
});

describe("PATCH /admin/customers/{id}/limits", () => {
  const patch = (id: string, payload: unknown) =>
    t.app.inject({
      method: "PATCH",
      url: `/admin/customers/${id}/limits`,
      headers: bearer(root.access),
      payload: payload as Record<string, unknown>,
    });

  it("sets overrides, null resets to the tier default, each change audited and applied", async () => {
    const s = await signUp(t, "limits");
    const limits = t.app.platform.limits.customerLimits;
    expect((await limits.get(s.customerId)).limits.perMinute).toBe(10);
    const set = await patch(s.customerId, { rate_limit_per_minute: 300, quota_per_day: 0 });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json().limits.overrides).toEqual({
      rate_limit_per_minute: 300,
      quota_per_day: 0,
      quota_per_month: null,
    });
    expect((await limits.get(s.customerId)).limits.perMinute).toBe(300);
    const reset = await patch(s.customerId, { rate_limit_per_minute: null });
    expect(reset.json().limits.overrides).toEqual({
      rate_limit_per_minute: null,
      quota_per_day: 0,
      quota_per_month: null,
    });
    expect(reset.json().limits.effective.rate_limit_per_minute).toBe(10);
    expect((await limits.get(s.customerId)).limits.perMinute).toBe(10);
    const entries = await auditOf(s.customerId, "customer.limits_change");
    expect(entries).toHaveLength(2);
    expect(entries.map((e) => e.details)).toContainEqual({
      fields: ["rate_limit_per_minute"],
      from: { rate_limit_per_minute: 300, quota_per_day: 0, quota_per_month: null },
      to: { rate_limit_per_minute: null, quota_per_day: 0, quota_per_month: null },
      source: "admin_api",
    });
  });

  it("rejects negative, fractional, unknown or no fields, and unknown customers", async () => {
    const s = await signUp(t, "limitsbad");
    for (const body of [
      { quota_per_day: -1 },
      { rate_limit_per_minute: 1.5 },
      { quota_per_month: "10" },
      { burst: 5 },
      {},
    ]) {
      expectProblem(await patch(s.customerId, body), 422, "validation_failed");
    }
    expectProblem(await patch("nope", { quota_per_day: 1 }), 400, "invalid_request");
    expectProblem(await patch(NIL, { quota_per_day: 1 }), 404, "not_found");
    expect(await auditOf(s.customerId, "customer.limits_change")).toHaveLength(0);
  });
});

describe.skipIf(process.env.TEST_REDIS_URL === undefined)("two instances sharing database and Redis", () => {
  let a: TestContext;
  let b: TestContext;
  beforeAll(async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    a = await buildTestApp({ redisKeyPrefix: prefix });
    b = await buildTestApp({ redisKeyPrefix: prefix, database: a.database });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("a tier or limit change on one instance applies on the other within a second", async () => {
    const su = await signUpSuperuser(a, "root2");
    const s = await signUp(a, "multi");
    const onB = b.app.platform.limits.customerLimits;
    expect((await onB.get(s.customerId)).tier).toBe("free"); // cached on b
    const tier = await a.app.inject({
      method: "POST",
      url: `/admin/customers/${s.customerId}/tier`,
      headers: bearer(su.access),
      payload: { tier: "pro", reason: "trial" },
    });
    expect(tier.statusCode, tier.body).toBe(200);
    const deadline = Date.now() + 1_000;
    while ((await onB.get(s.customerId)).tier !== "pro" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await onB.get(s.customerId)).tier).toBe("pro");

    const lim = await a.app.inject({
      method: "PATCH",
      url: `/admin/customers/${s.customerId}/limits`,
      headers: bearer(su.access),
      payload: { quota_per_day: 7 },
    });
    expect(lim.statusCode, lim.body).toBe(200);
    const deadline2 = Date.now() + 1_000;
    while ((await onB.get(s.customerId)).limits.perDay !== 7 && Date.now() < deadline2) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await onB.get(s.customerId)).limits.perDay).toBe(7);
  });
});
