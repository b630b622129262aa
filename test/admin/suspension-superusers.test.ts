import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditLog, customers, users } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import type { TestContext } from "../helpers/app.ts";
import { as, buildAdminApp, superuserReq } from "./suspension-helpers.ts";

/** POST /admin/users/{user_id}/superuser: grant, revoke, the last-superuser guard, audit, immediacy. */

let t: TestContext;
let root: Session;

beforeAll(async () => {
  t = await buildAdminApp();
  root = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

const auditOf = (userId: string) =>
  t.database.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.targetType, "user"), eq(auditLog.targetId, userId)));
const adminCall = (s: Session) =>
  t.app.inject({ method: "GET", url: "/admin/audit-log?limit=1", headers: bearer(s.access) });

describe("POST /admin/users/{user_id}/superuser", () => {
  it("is superuser only (401 / 403 / 403)", async () => {
    const owner = await signUp(t, "owner");
    await expectSuperuserOnly(t, owner, [superuserReq(owner.userId, true)]);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, owner.userId));
    expect(row?.isSuperuser).toBe(false);
  });

  it("bad input: malformed uuid 400, unknown user 404, wrong type, missing field and unknown fields 422", async () => {
    const u = await signUp(t, "target");
    expectProblem(await as(t, root, superuserReq("nope", true)), 400, "invalid_request");
    expectProblem(await as(t, root, superuserReq("00000000-0000-4000-8000-000000000000", true)), 404, "not_found");
    for (const payload of [
      {},
      { is_superuser: "true" },
      { is_superuser: 1 },
      { is_superuser: null },
      { is_superuser: true, role: "x" },
    ]) {
      const res = await as(t, root, { method: "POST", url: `/admin/users/${u.userId}/superuser`, payload });
      expectProblem(res, 422, "validation_failed");
    }
    expect(await auditOf(u.userId)).toHaveLength(0);
  });

  it("a grant and a revoke apply to the user's next request with the same token, each audited", async () => {
    const u = await signUp(t, "promoted");
    expectProblem(await adminCall(u), 403, "forbidden");
    const g = await as(t, root, superuserReq(u.userId, true), "203.0.113.9");
    expect(g.statusCode, g.body).toBe(200);
    expect(g.json()).toEqual({
      user_id: u.userId,
      email: u.email,
      customer_id: u.customerId,
      is_superuser: true,
      changed: true,
    });
    // Same access token, no new sign-in: the flag is read from the account row, not the JWT.
    expect((await adminCall(u)).statusCode).toBe(200);
    expect(
      (await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(u.access) })).json().is_superuser,
    ).toBe(true);
    const r = await as(t, root, superuserReq(u.userId, false), "203.0.113.10");
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ is_superuser: false, changed: true });
    expectProblem(await adminCall(u), 403, "forbidden");
    // Sessions were not ended.
    expect((await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(u.access) })).statusCode).toBe(200);

    const rows = (await auditOf(u.userId)).sort((a, b) => a.at.getTime() - b.at.getTime());
    expect(rows.map((x) => x.action)).toEqual(["user.superuser_grant", "user.superuser_revoke"]);
    expect(rows[0]).toMatchObject({
      actorUserId: root.userId,
      actorCustomerId: root.customerId,
      customerId: u.customerId,
      requestId: g.headers["x-request-id"],
      ip: "203.0.113.9",
      details: { is_superuser: true, source: "api" },
    });
    expect(rows[1]).toMatchObject({ requestId: r.headers["x-request-id"], ip: "203.0.113.10" });
  });

  it("setting the flag the user already has changes nothing and audits nothing", async () => {
    const u = await signUp(t, "same");
    const res = await as(t, root, superuserReq(u.userId, false));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ is_superuser: false, changed: false });
    expect(await auditOf(u.userId)).toHaveLength(0);
  });

  it("the last active superuser cannot be demoted (409 last_superuser), by themselves or by a race", async () => {
    // Only root and this second one are superusers in this app (earlier tests revoked theirs).
    const second = await signUpSuperuser(t, "second");
    // An inactive superuser, or one whose customer is suspended, does not count as one who could still act.
    const ghost = await signUpSuperuser(t, "ghost");
    await t.database.db.update(users).set({ isActive: false }).where(eq(users.id, ghost.userId));
    const benched = await signUpSuperuser(t, "benched");
    await t.database.db
      .update(customers)
      .set({ suspendedAt: new Date(), suspendedReason: "test" })
      .where(eq(customers.id, benched.customerId));

    // Two demotions at once: one wins, the other is refused, never both. The loser gets 409
    // last_superuser when both passed the superuser check before either committed, else 403
    // (its caller was demoted by the winner first).
    const [a, b] = await Promise.all([
      as(t, root, superuserReq(second.userId, false)),
      as(t, second, superuserReq(root.userId, false)),
    ]);
    expect(
      [a.statusCode, b.statusCode].filter((s) => s === 200),
      `${a.body} ${b.body}`,
    ).toHaveLength(1);
    const loser = a.statusCode === 200 ? b : a;
    expect([403, 409]).toContain(loser.statusCode);
    const survivor = a.statusCode === 200 ? root : second;
    // The survivor cannot demote themselves either.
    expectProblem(await as(t, survivor, superuserReq(survivor.userId, false)), 409, "last_superuser");
    const active = await t.database.db
      .select({ id: users.id })
      .from(users)
      .where(and(eq(users.isSuperuser, true), eq(users.isActive, true)));
    expect(active.map((x) => x.id).sort()).toEqual([survivor.userId, benched.userId].sort());
    // Restore root for any later test.
    if (survivor !== root) expect((await as(t, survivor, superuserReq(root.userId, true))).statusCode).toBe(200);
  });
});
