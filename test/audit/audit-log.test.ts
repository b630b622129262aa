import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuditLogRow, auditLog, users } from "../../src/platform/db/schema/index.ts";
import {
  bearer,
  expectProblem,
  login,
  PASSWORD,
  register,
  type Session,
  signUp,
  uniqueEmail,
} from "../auth/helpers.ts";
import { type BillingTestContext, buildBillingApp } from "../billing/helpers.ts";
import { deliverOk, invoiceEvent, subEvent, subscribe } from "../billing/webhook-helpers.ts";

const DAY = 86_400_000;
let nowMs = Date.parse("2026-12-01T12:00:00Z");
let t: BillingTestContext;
let superuser: Session;

/** Registers an account, makes it a superuser in the database, then signs in. */
async function signUpSuperuser(): Promise<Session> {
  const email = uniqueEmail("root");
  const reg = await register(t, { email, password: PASSWORD });
  expect(reg.statusCode, reg.body).toBe(201);
  await t.database.db.update(users).set({ isSuperuser: true }).where(eq(users.id, reg.json().id));
  const tok = await login(t, email, PASSWORD);
  expect(tok.statusCode, tok.body).toBe(200);
  return {
    email,
    userId: reg.json().id,
    customerId: reg.json().customer_id,
    access: tok.json().access_token,
    refresh: tok.json().refresh_token,
  };
}

beforeAll(async () => {
  t = await buildBillingApp({ now: () => nowMs, env: { BILLING_GRACE_DAYS: "7" } });
  superuser = await signUpSuperuser();
});
afterAll(async () => {
  await t?.close();
});

const rows = (where: ReturnType<typeof and>) => t.database.db.select().from(auditLog).where(where);
const rowsOf = (customerId: string, action: string) =>
  rows(and(eq(auditLog.customerId, customerId), eq(auditLog.action, action)));

type Inject = Parameters<BillingTestContext["app"]["inject"]>[0];
async function call(opts: Inject & object, status: number) {
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
