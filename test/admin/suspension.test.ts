import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SuspensionRepo } from "../../src/modules/admin/suspension.repo.ts";
import { SuspensionService } from "../../src/modules/admin/suspension.service.ts";
import { SYSTEM_ACTOR } from "../../src/platform/audit.ts";
import { type AuditLogRow, auditLog, customers, users } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, login, PASSWORD, type Session, signUp } from "../auth/helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import type { TestContext } from "../helpers/app.ts";
import { as, buildAdminApp, newTenant, suspendReq, unsuspendReq } from "./suspension-helpers.ts";

let t: TestContext;
let root: Session;

beforeAll(async () => {
  t = await buildAdminApp();
  root = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

const withKey = (key: string, url = "/v1/usage") => t.app.inject({ method: "GET", url, headers: { "x-api-key": key } });
const me = (access: string) => t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(access) });
const refresh = (token: string) =>
  t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: token } });

async function auditRows(customerId: string, action: string): Promise<AuditLogRow[]> {
  return t.database.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.customerId, customerId), eq(auditLog.action, action)));
}

describe("superuser only", () => {
  it("every route refuses anonymous callers (401), a customer owner and an admin-scope key (403), changing nothing", async () => {
    const owner = await signUp(t, "plain-owner");
    const victim = await newTenant(t, "victim");
    await expectSuperuserOnly(t, owner, [
      suspendReq(victim.customerId),
      unsuspendReq(victim.customerId),
      { method: "POST", url: `/admin/users/${owner.userId}/superuser`, payload: { is_superuser: true } },
    ]);
    const [row] = await t.database.db.select().from(customers).where(eq(customers.id, victim.customerId));
    expect(row?.suspendedAt).toBeNull();
    expect((await me(owner.access)).json().is_superuser).toBe(false);
  });
});

describe("bad input", () => {
  it("malformed ids, unknown ids, missing / blank / too long reasons, wrong types and unknown fields", async () => {
    const victim = await newTenant(t, "bad-input");
    expectProblem(await as(t, root, suspendReq("not-a-uuid")), 400, "invalid_request");
    expectProblem(await as(t, root, unsuspendReq("12345")), 400, "invalid_request");
    expectProblem(await as(t, root, suspendReq("00000000-0000-4000-8000-000000000000")), 404, "not_found");
    expectProblem(await as(t, root, unsuspendReq("00000000-0000-4000-8000-000000000000")), 404, "not_found");
    for (const body of [
      {},
      { reason: "" },
      { reason: "   " },
      { reason: "x".repeat(501) },
      { reason: 42 },
      { reason: ["a"] },
      { reason: "ok", extra: true },
    ]) {
      const res = await as(t, root, suspendReq(victim.customerId, body));
      expectProblem(res, 422, "validation_failed");
    }
    expectProblem(await as(t, root, unsuspendReq(victim.customerId, { reason: 1 })), 422, "validation_failed");
    expectProblem(await as(t, root, unsuspendReq(victim.customerId, { why: "x" })), 422, "validation_failed");
    // Exactly 500 characters is accepted; nothing above changed the customer before it.
    const ok = await as(t, root, suspendReq(victim.customerId, { reason: "y".repeat(500) }));
    expect(ok.statusCode, ok.body).toBe(200);
    expect(await auditRows(victim.customerId, "customer.suspend")).toHaveLength(1);
  });
});

describe("suspend and unsuspend", () => {
  it("stops the customer's keys, sessions, refresh and sign-in at once, with the reason; unsuspend restores them", async () => {
    const v = await newTenant(t, "suspended");
    const member = await login(t, v.email, PASSWORD);
    const second = member.json() as { access_token: string; refresh_token: string };
    expect((await withKey(v.key)).statusCode).toBe(200);
    expect((await me(v.access)).statusCode).toBe(200);

    const res = await as(t, root, suspendReq(v.customerId, { reason: "Unpaid invoices since October" }));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      customer_id: v.customerId,
      status: "suspended",
      suspended_reason: "Unpaid invoices since October",
      members: 1,
    });
    const at = res.json().suspended_at as string;

    // API key: 403 with the reason, no credential challenge.
    const keyRes = await withKey(v.key);
    const p = expectProblem(keyRes, 403, "customer_suspended");
    expect(p).toMatchObject({ suspended_at: at, suspended_reason: "Unpaid invoices since October" });
    expect(p.detail).toContain("Unpaid invoices since October");
    // Inference too, refused before the body is read or anything metered.
    expectProblem(
      await t.app.inject({ method: "POST", url: "/v1/inference", headers: { "x-api-key": v.key }, payload: {} }),
      403,
      "customer_suspended",
    );
    // Access tokens of both sessions.
    expectProblem(await me(v.access), 403, "customer_suspended");
    expectProblem(await me(second.access_token), 403, "customer_suspended");
    // Refresh: refused, and the token is not spent (so it works again after unsuspension).
    expectProblem(await refresh(v.refresh), 403, "customer_suspended");
    expectProblem(await refresh(v.refresh), 403, "customer_suspended");
    // Sign-in: a clear 403 after the right password; a wrong one still gets the usual 401.
    const signIn = expectProblem(await login(t, v.email, PASSWORD), 403, "customer_suspended");
    expect(signIn.detail).toMatch(/suspended .*Unpaid invoices since October/);
    expectProblem(await login(t, v.email, "wrong password entirely"), 401, "invalid_credentials");

    // Another customer is untouched.
    const other = await newTenant(t, "bystander");
    expect((await withKey(other.key)).statusCode).toBe(200);

    const back = await as(t, root, unsuspendReq(v.customerId, { reason: "paid" }));
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json()).toMatchObject({ status: "active", suspended_at: null, suspended_reason: null });
    expect((await withKey(v.key)).statusCode).toBe(200);
    expect((await me(v.access)).statusCode).toBe(200);
    expect((await me(second.access_token)).statusCode).toBe(200);
    const rotated = await refresh(v.refresh);
    expect(rotated.statusCode, rotated.body).toBe(200);
    expect((await login(t, v.email, PASSWORD)).statusCode).toBe(200);
  });

  it("requests of a suspended customer are never metered", async () => {
    const v = await newTenant(t, "metered");
    const used = async () => ((await withKey(v.key)).json() as { day: { used: number } }).day.used;
    expect(await used()).toBe(0);
    expect((await as(t, root, suspendReq(v.customerId))).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) {
      const r = await t.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": v.key },
        payload: { instruction: "pick", robot_id: "arm-1", image: "AAAA" },
      });
      expectProblem(r, 403, "customer_suspended");
    }
    // A suspended key is a real key, not a guess: many refusals never trip the invalid-key throttle.
    for (let i = 0; i < 35; i++) {
      const r = await t.app.inject({
        method: "GET",
        url: "/v1/usage",
        headers: { "x-api-key": v.key },
        remoteAddress: "192.0.2.77",
      });
      expectProblem(r, 403, "customer_suspended");
    }
    const guess = await t.app.inject({
      method: "GET",
      url: "/v1/usage",
      headers: { "x-api-key": `vla_live_${"1".repeat(43)}` },
      remoteAddress: "192.0.2.77",
    });
    expectProblem(guess, 401, "invalid_api_key");
    expect((await as(t, root, unsuspendReq(v.customerId))).statusCode).toBe(200);
    expect(await used()).toBe(0);
  });

  it("409 already_suspended, 409 not_suspended, 409 for the caller's own customer; nothing changes", async () => {
    const v = await newTenant(t, "twice");
    expectProblem(await as(t, root, unsuspendReq(v.customerId)), 409, "not_suspended");
    expect((await as(t, root, suspendReq(v.customerId, { reason: "first" }))).statusCode).toBe(200);
    const again = expectProblem(
      await as(t, root, suspendReq(v.customerId, { reason: "second" })),
      409,
      "already_suspended",
    );
    expect(typeof again.suspended_at).toBe("string");
    const [row] = await t.database.db.select().from(customers).where(eq(customers.id, v.customerId));
    expect(row?.suspendedReason).toBe("first");
    expect(await auditRows(v.customerId, "customer.suspend")).toHaveLength(1);
    expectProblem(await as(t, root, suspendReq(root.customerId)), 409, "conflict");
    expect((await me(root.access)).statusCode).toBe(200);
  });

  it("each change writes one audit entry with actor, target, request id, IP and reason (same transaction)", async () => {
    const v = await newTenant(t, "audited");
    const s = await as(t, root, suspendReq(v.customerId, { reason: "abuse report #4411" }), "203.0.113.50");
    expect(s.statusCode).toBe(200);
    const u = await as(t, root, unsuspendReq(v.customerId, { reason: "resolved" }), "203.0.113.51");
    expect(u.statusCode).toBe(200);
    const [sRow] = await auditRows(v.customerId, "customer.suspend");
    expect(sRow).toMatchObject({
      actorUserId: root.userId,
      actorCustomerId: root.customerId,
      actorApiKeyId: null,
      customerId: v.customerId,
      targetType: "customer",
      targetId: v.customerId,
      requestId: s.headers["x-request-id"],
      ip: "203.0.113.50",
      details: { reason: "abuse report #4411", source: "api" },
    });
    const [uRow] = await auditRows(v.customerId, "customer.unsuspend");
    expect(uRow).toMatchObject({
      actorUserId: root.userId,
      targetId: v.customerId,
      requestId: u.headers["x-request-id"],
      ip: "203.0.113.51",
      details: {
        reason: "resolved",
        suspended_reason: "abuse report #4411",
        suspended_at: s.json().suspended_at,
        source: "api",
      },
    });
    // A refused change leaves no entry.
    expectProblem(await as(t, root, unsuspendReq(v.customerId)), 409, "not_suspended");
    expect(await auditRows(v.customerId, "customer.unsuspend")).toHaveLength(1);
  });

  it("the change and its audit entry commit together: when the entry cannot be written, nothing changes", async () => {
    const v = await newTenant(t, "atomic");
    const u = await signUp(t, "atomic-user");
    const service = new SuspensionService({
      repo: new SuspensionRepo(t.database.db),
      invalidation: t.app.platform.invalidation,
      now: Date.now,
    });
    // actor_user_id is a uuid column: this actor makes the audit INSERT fail inside the transaction.
    const broken = { ...SYSTEM_ACTOR, actorUserId: "not-a-uuid", source: "api" as const };
    await expect(service.suspend(broken, v.customerId, "x")).rejects.toThrow();
    await expect(service.setSuperuser(broken, u.userId, true)).rejects.toThrow();
    const [c] = await t.database.db.select().from(customers).where(eq(customers.id, v.customerId));
    expect(c?.suspendedAt).toBeNull();
    const [row] = await t.database.db.select().from(users).where(eq(users.id, u.userId));
    expect(row?.isSuperuser).toBe(false);
    expect((await withKey(v.key)).statusCode).toBe(200);
  });

  it("unsuspend takes no body at all", async () => {
    const v = await newTenant(t, "nobody");
    expect((await as(t, root, suspendReq(v.customerId))).statusCode).toBe(200);
    const res = await t.app.inject({
      method: "POST",
      url: `/admin/customers/${v.customerId}/unsuspend`,
      headers: bearer(root.access),
    });
    expect(res.statusCode, res.body).toBe(200);
    const [row] = await auditRows(v.customerId, "customer.unsuspend");
    expect(row?.details).toMatchObject({ reason: null });
  });
});
