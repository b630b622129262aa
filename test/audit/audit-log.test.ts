import { and, eq, sql } from "drizzle-orm";
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuditLogRow, auditLog } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, PASSWORD, type Session, signUp } from "../auth/helpers.ts";
import { type BillingTestContext, buildBillingApp } from "../billing/helpers.ts";
import { deliverOk, invoiceEvent, subEvent, subscribe } from "../billing/webhook-helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";

const DAY = 86_400_000;
let nowMs = Date.parse("2026-12-01T12:00:00Z");
let t: BillingTestContext;
let superuser: Session;

beforeAll(async () => {
  t = await buildBillingApp({ now: () => nowMs, env: { BILLING_GRACE_DAYS: "7" } });
  superuser = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

const rows = (where: ReturnType<typeof and>) => t.database.db.select().from(auditLog).where(where);
const rowsOf = (customerId: string, action: string) =>
  rows(and(eq(auditLog.customerId, customerId), eq(auditLog.action, action)));

async function call(opts: InjectOptions, status: number) {
  const res = await t.app.inject({ remoteAddress: "198.51.100.9", ...opts });
  expect(res.statusCode, res.body).toBe(status);
  return res;
}

/** The one entry of that action about that customer, with the request's actor, id and IP. */
async function onlyEntry(s: Session, action: string, res: { headers: Record<string, unknown> }): Promise<AuditLogRow> {
  const found = await rowsOf(s.customerId, action);
  expect(found, action).toHaveLength(1);
  const entry = found[0] as AuditLogRow;
  expect(entry).toMatchObject({
    actorUserId: s.userId,
    actorCustomerId: s.customerId,
    actorApiKeyId: null,
    customerId: s.customerId,
    requestId: res.headers["x-request-id"],
    ip: "198.51.100.9",
  });
  return entry;
}

describe("writes", () => {
  it("API keys: create, update, rotate and revoke each write one entry, never the secret", async () => {
    const s = await signUp(t, "keys");
    const created = await call(
      {
        method: "POST",
        url: "/v1/api-keys",
        headers: bearer(s.access),
        payload: { name: "arm-1", scopes: ["inference", "admin"] },
      },
      201,
    );
    const key = created.json() as { id: string; key: string };
    const c = await onlyEntry(s, "api_key.create", created);
    expect(c).toMatchObject({ targetType: "api_key", targetId: key.id });
    expect(c.details).toEqual({ scopes: ["inference", "admin"], fields: ["name", "scopes"] });

    const renamed = await call(
      { method: "PATCH", url: `/v1/api-keys/${key.id}`, headers: bearer(s.access), payload: { name: "arm-2" } },
      200,
    );
    const u = await onlyEntry(s, "api_key.update", renamed);
    expect(u).toMatchObject({ targetId: key.id, details: { fields: ["name"] } });

    const rotated = await call(
      {
        method: "POST",
        url: `/v1/api-keys/${key.id}/rotate`,
        headers: bearer(s.access),
        payload: { grace_seconds: 60 },
      },
      201,
    );
    const fresh = (rotated.json() as { api_key: { id: string; key: string } }).api_key;
    const r = await onlyEntry(s, "api_key.rotate", rotated);
    expect(r).toMatchObject({ targetId: key.id, details: { new_key_id: fresh.id, grace_seconds: 60 } });

    // Acting with an admin key: the key is the actor, no user.
    const revoked = await call(
      { method: "DELETE", url: `/v1/api-keys/${fresh.id}`, headers: { "x-api-key": fresh.key } },
      200,
    );
    const [v] = await rowsOf(s.customerId, "api_key.revoke");
    expect(v).toMatchObject({
      actorUserId: null,
      actorApiKeyId: fresh.id,
      actorCustomerId: s.customerId,
      targetId: fresh.id,
      requestId: revoked.headers["x-request-id"],
    });
    expect(await rowsOf(s.customerId, "api_key.revoke")).toHaveLength(1);

    const all = JSON.stringify(await rows(eq(auditLog.customerId, s.customerId)));
    for (const secret of [key.key, fresh.key, key.key.slice(9), fresh.key.slice(9)]) expect(all).not.toContain(secret);
    expect(all).not.toContain("arm-2");
  });

  it("safety profiles: create, update and delete write field names, never the limits", async () => {
    const s = await signUp(t, "profiles");
    const url = "/v1/robots/arm-7/safety-profile";
    const put = (payload: Record<string, unknown>) =>
      call({ method: "PUT", url, headers: bearer(s.access), payload }, 200);
    const first = await put({ control_hz: 17, max_linear_velocity: 0.4321 });
    const c = await onlyEntry(s, "safety_profile.create", first);
    expect(c).toMatchObject({ targetType: "robot", targetId: "arm-7" });
    expect(c.details).toEqual({ fields: ["control_hz", "max_linear_velocity"] });

    const second = await put({ control_hz: 17, max_linear_velocity: 0.9876 });
    const u = await onlyEntry(s, "safety_profile.update", second);
    expect(u.details).toEqual({ fields: ["control_hz", "max_linear_velocity"], changed: ["max_linear_velocity"] });

    const gone = await call({ method: "DELETE", url, headers: bearer(s.access) }, 204);
    await onlyEntry(s, "safety_profile.delete", gone);
    // A failed delete (no profile) writes nothing.
    await call({ method: "DELETE", url, headers: bearer(s.access) }, 404);
    expect(await rowsOf(s.customerId, "safety_profile.delete")).toHaveLength(1);
    // An invalid profile writes nothing.
    await call({ method: "PUT", url, headers: bearer(s.access), payload: { control_hz: -1 } }, 422);
    expect(
      await rows(and(eq(auditLog.customerId, s.customerId), sql`${auditLog.action} like 'safety_profile.%'`)),
    ).toHaveLength(3);

    const all = JSON.stringify(await rows(eq(auditLog.customerId, s.customerId)));
    expect(all).not.toContain("0.4321");
    expect(all).not.toContain("0.9876");
  });

  it("billing settings: one entry with the changed settings", async () => {
    const s = await signUp(t, "settings");
    const res = await call(
      {
        method: "PATCH",
        url: "/v1/billing/settings",
        headers: bearer(s.access),
        payload: { stream_overage_cap_seconds: 600 },
      },
      200,
    );
    const e = await onlyEntry(s, "billing_settings.update", res);
    expect(e.details).toEqual({
      fields: ["stream_overage_cap_seconds"],
      changes: { stream_overage_cap_seconds: { from: null, to: 600 } },
    });
    // Refused (the free plan cannot turn overage on): nothing written.
    await call(
      {
        method: "PATCH",
        url: "/v1/billing/settings",
        headers: bearer(s.access),
        payload: { overage: true, monthly_overage_cap: 5 },
      },
      409,
    );
    expect(await rowsOf(s.customerId, "billing_settings.update")).toHaveLength(1);
  });

  it("tier changes by Stripe's webhook and by grace expiry: from, to and source, no actor", async () => {
    const sub = await subscribe(t, "tier");
    const [up] = await rowsOf(sub.customerId, "customer.tier_change");
    expect(up).toMatchObject({
      actorUserId: null,
      actorCustomerId: null,
      targetType: "customer",
      targetId: sub.customerId,
    });
    expect(up?.details).toMatchObject({
      from: "free",
      to: "pro",
      source: "stripe",
      stripe_event_type: "checkout.session.completed",
    });
    expect(String(up?.details.stripe_event_id)).toMatch(/^evt_/);

    // An event that changes no tier writes nothing.
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.updated", sub.subId))).toBe("applied");
    expect(await rowsOf(sub.customerId, "customer.tier_change")).toHaveLength(1);

    // Payment fails, grace runs out: the job drops the tier.
    t.fake.state.updateSubscription(sub.subId, { status: "past_due" });
    const inv = t.fake.state.putInvoice({ customer: sub.stripeCustomerId, subscription: sub.subId, status: "open" });
    expect(await deliverOk(t, invoiceEvent(t.fake, "invoice.payment_failed", inv.id as string))).toBe("applied");
    nowMs += 8 * DAY;
    await t.runJobs();
    const changes = await rowsOf(sub.customerId, "customer.tier_change");
    expect(changes.map((c) => c.details)).toContainEqual({ from: "pro", to: "free", source: "grace_expired" });

    t.fake.state.updateSubscription(sub.subId, { status: "canceled" });
    expect(await deliverOk(t, subEvent(t.fake, "customer.subscription.deleted", sub.subId))).toBe("applied");
    // Already free: no third entry.
    expect(await rowsOf(sub.customerId, "customer.tier_change")).toHaveLength(2);
  });
});

type Page = { data: Record<string, unknown>[]; next_cursor: string | null };

describe("GET /v1/audit-log and /admin/audit-log", () => {
  let a: Session;
  let b: Session;
  let keyIds: string[];
  beforeAll(async () => {
    a = await signUp(t, "owner-a");
    b = await signUp(t, "owner-b");
    keyIds = [];
    for (let i = 0; i < 5; i++) {
      const res = await call(
        { method: "POST", url: "/v1/api-keys", headers: bearer(a.access), payload: { name: `k${i}` } },
        201,
      );
      keyIds.push((res.json() as { id: string }).id);
    }
    await call({ method: "DELETE", url: `/v1/api-keys/${keyIds[0]}`, headers: bearer(a.access) }, 200);
    await call(
      { method: "PUT", url: "/v1/robots/b-arm/safety-profile", headers: bearer(b.access), payload: { control_hz: 9 } },
      200,
    );
  });

  const own = (s: Session, query = "") =>
    t.app.inject({ method: "GET", url: `/v1/audit-log${query}`, headers: bearer(s.access) });
  const admin = (token: string, query = "") =>
    t.app.inject({ method: "GET", url: `/admin/audit-log${query}`, headers: bearer(token) });

  it("an owner sees its own customer's entries, newest first, and never another customer's", async () => {
    const res = await own(a);
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json() as Page;
    expect(page.data.map((e) => e.action)).toEqual([
      "api_key.revoke",
      "api_key.create",
      "api_key.create",
      "api_key.create",
      "api_key.create",
      "api_key.create",
    ]);
    expect(page.data.every((e) => e.customer_id === a.customerId)).toBe(true);
    expect(page.data[0]).toMatchObject({ actor_user_id: a.userId, target_id: keyIds[0], ip: "198.51.100.9" });
    expect(page.next_cursor).toBeNull();

    const other = (await own(b)).json() as Page;
    expect(other.data.map((e) => e.action)).toEqual(["safety_profile.create"]);
    expect(JSON.stringify(other)).not.toContain(a.customerId);
    // Filtering by another customer's target or actor finds nothing either.
    expect(((await own(b, `?target_id=${keyIds[1]}`)).json() as Page).data).toEqual([]);
    expect(((await own(b, `?actor_user_id=${a.userId}`)).json() as Page).data).toEqual([]);
    // customer_id is not a filter of /v1.
    expectProblem(await own(b, `?customer_id=${a.customerId}`), 400, "invalid_request");
  });

  it("filters: action prefix, target, actor, time range", async () => {
    const q = async (query: string) => ((await own(a, query)).json() as Page).data;
    expect(await q("?action=api_key.")).toHaveLength(6);
    expect(await q("?action=api_key.revoke")).toHaveLength(1);
    expect(await q("?action=api_key.revok")).toHaveLength(1);
    expect(await q("?action=safety_profile.")).toHaveLength(0);
    expect(await q(`?target_type=api_key&target_id=${keyIds[0]}`)).toHaveLength(2);
    expect(await q(`?actor_user_id=${a.userId}`)).toHaveLength(6);
    expect(await q(`?actor_user_id=${b.userId}`)).toHaveLength(0);
    const [newest] = await q("?limit=1");
    const at = Date.parse(String(newest?.at));
    expect(await q(`?from=${new Date(at + 1).toISOString()}`)).toHaveLength(0);
    expect((await q(`?to=${new Date(at + 1).toISOString()}`)).length).toBe(6);
    expect((await q(`?from=${new Date(at).toISOString()}`)).length).toBeGreaterThanOrEqual(1);
  });

  it("pages with a cursor, without gaps or repeats", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await own(a, `?limit=4${cursor === null ? "" : `&cursor=${cursor}`}`);
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as Page;
      seen.push(...page.data.map((e) => String(e.id)));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(2);
    const all = ((await own(a, "?limit=200")).json() as Page).data.map((e) => String(e.id));
    expect(seen).toEqual(all);
    expect(new Set(seen).size).toBe(6);
  });

  it("bad input is 400 invalid_request", async () => {
    for (const query of [
      "?actor_user_id=not-a-uuid",
      "?limit=0",
      "?limit=201",
      "?limit=abc",
      "?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
      "?from=2026-12-01T00:00:00Z&to=2026-12-01T00:00:00Z",
      "?from=yesterday",
      "?action=API_KEY",
      "?action=a%25",
      "?target_type=api-key",
      "?cursor=bm90LWEtY3Vyc29y",
      "?unknown=1",
    ]) {
      const res = await own(a, query);
      expect(res.statusCode, `${query}: ${res.body}`).toBe(400);
      expect((res.json() as { code: string }).code, query).toBe("invalid_request");
    }
    expectProblem(await admin(superuser.access, "?customer_id=nope"), 400, "invalid_request");
  });

  it("needs the owner or an admin key: 401 without credentials, 403 for an inference key", async () => {
    expectProblem(await t.app.inject({ method: "GET", url: "/v1/audit-log" }), 401, "unauthorized");
    const k = await call(
      {
        method: "POST",
        url: "/v1/api-keys",
        headers: bearer(b.access),
        payload: { name: "robot", scopes: ["inference"] },
      },
      201,
    );
    const inferenceKey = (k.json() as { key: string }).key;
    expectProblem(
      await t.app.inject({ method: "GET", url: "/v1/audit-log", headers: { "x-api-key": inferenceKey } }),
      403,
      "forbidden",
    );
    const ak = await call(
      { method: "POST", url: "/v1/api-keys", headers: bearer(b.access), payload: { name: "ops", scopes: ["admin"] } },
      201,
    );
    const adminKey = (ak.json() as { key: string }).key;
    const res = await t.app.inject({ method: "GET", url: "/v1/audit-log", headers: { "x-api-key": adminKey } });
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as Page).data.every((e) => e.customer_id === b.customerId)).toBe(true);
  });

  it("/admin/audit-log: 403 for a non-superuser (owner or admin key), every customer for a superuser", async () => {
    await expectSuperuserOnly(t, await signUp(t, "plain"), [{ method: "GET", url: "/admin/audit-log?limit=5" }]);
    const all = (await admin(superuser.access, "?limit=200")).json() as Page;
    const customers = new Set(all.data.map((e) => e.customer_id));
    expect(customers.has(a.customerId)).toBe(true);
    expect(customers.has(b.customerId)).toBe(true);

    const onlyA = await admin(superuser.access, `?customer_id=${a.customerId}&action=api_key.`);
    expect(onlyA.statusCode, onlyA.body).toBe(200);
    const data = (onlyA.json() as Page).data;
    expect(data).toHaveLength(6);
    expect(data.every((e) => e.customer_id === a.customerId && e.ip === "198.51.100.9")).toBe(true);
  });

  it("a superuser's read of a customer's entries is itself audited, and the customer sees it (without the operator's IP)", async () => {
    const c = await signUp(t, "watched");
    const before = await rowsOf(c.customerId, "audit_log.read");
    expect(before).toHaveLength(0);
    const res = await t.app.inject({
      method: "GET",
      url: `/admin/audit-log?customer_id=${c.customerId}&target_type=api_key`,
      headers: bearer(superuser.access),
      remoteAddress: "192.0.2.44",
    });
    expect(res.statusCode, res.body).toBe(200);
    const [read] = await rowsOf(c.customerId, "audit_log.read");
    expect(read).toMatchObject({
      actorUserId: superuser.userId,
      actorCustomerId: superuser.customerId,
      customerId: c.customerId,
      targetType: "audit_log",
      requestId: res.headers["x-request-id"],
      ip: "192.0.2.44",
      details: { superuser: true, filters: ["customer_id", "target_type"], entries: 0 },
    });
    expect(await rowsOf(c.customerId, "audit_log.read")).toHaveLength(1);

    const seen = ((await own(c)).json() as Page).data;
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ action: "audit_log.read", actor_user_id: superuser.userId, ip: null });
  });
});

describe("append-only", () => {
  it("UPDATE, DELETE and TRUNCATE on audit_log are refused by the database", async () => {
    const s = await signUp(t, "append");
    await call(
      {
        method: "PATCH",
        url: "/v1/billing/settings",
        headers: bearer(s.access),
        payload: { stream_overage_cap_seconds: 60 },
      },
      200,
    );
    const id = (await rowsOf(s.customerId, "billing_settings.update"))[0]?.id as string;
    const db = t.database.db;
    // drizzle wraps the driver's error; the database's message is its cause.
    const refused = async (q: Promise<unknown>) => {
      const e = await q.then(
        () => undefined,
        (err: Error & { cause?: Error }) => err,
      );
      expect(e?.cause?.message ?? e?.message).toMatch(/audit_log is append-only/);
    };
    await refused(db.execute(sql`update audit_log set action = 'x' where id = ${id}`));
    await refused(db.execute(sql`delete from audit_log where id = ${id}`));
    await refused(db.execute(sql`truncate audit_log`));
    expect(await rowsOf(s.customerId, "billing_settings.update")).toMatchObject([
      { id, action: "billing_settings.update" },
    ]);
  });

  it("account erasure keeps the customer's entries and adds its own", async () => {
    const s = await signUp(t, "erased");
    await call({ method: "POST", url: "/v1/api-keys", headers: bearer(s.access), payload: { name: "x" } }, 201);
    const res = await call(
      { method: "DELETE", url: "/auth/me", headers: bearer(s.access), payload: { password: PASSWORD } },
      204,
    );
    const left = await rows(eq(auditLog.customerId, s.customerId));
    expect(left.map((r) => r.action).sort()).toEqual(["account.delete", "api_key.create"]);
    expect(left.find((r) => r.action === "account.delete")).toMatchObject({
      requestId: res.headers["x-request-id"],
      ip: "198.51.100.9",
    });
  });
});
