import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/modules/auth/password.ts";
import { auditLog, customers, emailTokens, refreshTokens, users } from "../../src/platform/db/schema/index.ts";
import type { ModuleOptions } from "../../src/platform/module.ts";
import {
  type AuthContext,
  bearer,
  buildAuthApp,
  expectProblem,
  login,
  PASSWORD,
  type Session,
  signUp,
} from "./helpers.ts";

let failHook = false;

/** A later feature plugging its table into the deletion registry, plus a probe of the principal. */
const probe: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  platform.deletion.register({
    name: "probe",
    async deleteUser({ tx, userId }) {
      if (failHook) throw new Error("hook failed");
      const r = await tx.execute(sql`delete from probe_notes where user_id = ${userId} returning 1`);
      return { probe_notes: (r as unknown as { rows: unknown[] }).rows.length };
    },
    async deleteCustomer({ tx, customerId }) {
      const r = await tx.execute(sql`delete from probe_robots where customer_id = ${customerId} returning 1`);
      return { probe_robots: (r as unknown as { rows: unknown[] }).rows.length };
    },
  });
  app.get(
    "/probe/admin",
    { preHandler: platform.auth.require({ scopes: ["admin"] }), schema: { hide: true } },
    async (request) => ({ scopes: request.principal?.scopes, tier: request.principal?.tier }),
  );
};

let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp({ plugins: [probe] });
  await t.database.db.execute(sql`create table probe_notes (user_id uuid not null, body text not null)`);
  await t.database.db.execute(sql`create table probe_robots (customer_id uuid not null, name text not null)`);
});
afterAll(async () => {
  await t.close();
});

async function seed(s: Session) {
  await t.database.db.execute(sql`insert into probe_notes values (${s.userId}, 'secret note')`);
  await t.database.db.execute(
    sql`insert into probe_robots values (${s.customerId}, 'arm-1'), (${s.customerId}, 'arm-2')`,
  );
}

async function count(table: string, column: string, id: string): Promise<number> {
  const r = await t.database.db.execute(
    sql`select count(*)::int as n from ${sql.raw(table)} where ${sql.raw(column)} = ${id}`,
  );
  return ((r as unknown as { rows: { n: number }[] }).rows[0] as { n: number }).n;
}

async function addMember(customerId: string, email: string): Promise<void> {
  await t.database.db
    .insert(users)
    .values({ customerId, email, role: "member", passwordHash: await hashPassword(PASSWORD) });
}

function del(token: string, password: string) {
  return t.app.inject({ method: "DELETE", url: "/auth/me", headers: bearer(token), payload: { password } });
}

describe("account deletion", () => {
  it("a sole owner's deletion removes the user, the customer and every plugged table; others are untouched", async () => {
    const victim = await signUp(t, "delete-me");
    const bystander = await signUp(t, "bystander");
    await seed(victim);
    await seed(bystander);
    await login(t, victim.email, PASSWORD);

    expectProblem(await del(victim.access, "not the password"), 422, "validation_failed");
    expect(await count("users", "id", victim.userId)).toBe(1);

    const res = await del(victim.access, PASSWORD);
    expect(res.statusCode, res.body).toBe(204);

    expect(await count("users", "id", victim.userId)).toBe(0);
    expect(await count("customers", "id", victim.customerId)).toBe(0);
    expect(await count("probe_notes", "user_id", victim.userId)).toBe(0);
    expect(await count("probe_robots", "customer_id", victim.customerId)).toBe(0);
    expect(await count("refresh_tokens", "user_id", victim.userId)).toBe(0);
    expect(await count("email_tokens", "user_id", victim.userId)).toBe(0);

    expect(await count("users", "id", bystander.userId)).toBe(1);
    expect(await count("customers", "id", bystander.customerId)).toBe(1);
    expect(await count("probe_notes", "user_id", bystander.userId)).toBe(1);
    expect(await count("probe_robots", "customer_id", bystander.customerId)).toBe(2);
    expect(await count("refresh_tokens", "user_id", bystander.userId)).toBeGreaterThan(0);
    expect((await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(bystander.access) })).statusCode).toBe(
      200,
    );

    const [entry] = await t.database.db.select().from(auditLog).where(eq(auditLog.actorUserId, victim.userId));
    expect(entry).toMatchObject({ action: "account.delete", targetType: "customer", targetId: victim.customerId });
    expect(entry?.requestId).toBe(res.headers["x-request-id"]);
    expect(entry?.details).toMatchObject({
      customer_deleted: true,
      deleted: { users: 1, customers: 1, probe_notes: 1, probe_robots: 2, refresh_tokens: 2, email_tokens: 1 },
    });
    const text = JSON.stringify(entry);
    expect(text).not.toContain(victim.email);
    expect(text).not.toContain("secret note");
    expect(text).not.toContain("arm-1");

    expectProblem(
      await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(victim.access) }),
      401,
      "invalid_token",
    );
    expectProblem(await login(t, victim.email, PASSWORD), 401, "invalid_credentials");
    await t.smtp.waitForMail(victim.email, /account was deleted/i);
  });

  it("a member's deletion removes only that user; the customer and its owner stay", async () => {
    const owner = await signUp(t, "owner");
    await seed(owner);
    const memberEmail = `member-${owner.userId.slice(0, 8)}@example.com`;
    await addMember(owner.customerId, memberEmail);
    const tok = (await login(t, memberEmail, PASSWORD)).json();

    // Members hold the inference scope only; owners hold admin too.
    expectProblem(
      await t.app.inject({ method: "GET", url: "/probe/admin", headers: bearer(tok.access_token) }),
      403,
      "forbidden",
    );
    const asOwner = await t.app.inject({ method: "GET", url: "/probe/admin", headers: bearer(owner.access) });
    expect(asOwner.json()).toEqual({ scopes: ["inference", "admin"], tier: "free" });

    expect((await del(tok.access_token, PASSWORD)).statusCode).toBe(204);
    expect(await t.database.db.select().from(users).where(eq(users.email, memberEmail))).toHaveLength(0);
    expect(await count("customers", "id", owner.customerId)).toBe(1);
    expect(await count("probe_robots", "customer_id", owner.customerId)).toBe(2);
    expect((await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(owner.access) })).statusCode).toBe(
      200,
    );
    const [entry] = await t.database.db.select().from(auditLog).where(eq(auditLog.actorCustomerId, owner.customerId));
    expect(entry).toMatchObject({ targetType: "user", details: expect.objectContaining({ customer_deleted: false }) });
  });

  it("is all or nothing: a failing hook leaves every row in place", async () => {
    const s = await signUp(t, "atomic");
    await seed(s);
    failHook = true;
    try {
      const res = await del(s.access, PASSWORD);
      expect(res.statusCode).toBe(500);
    } finally {
      failHook = false;
    }
    expect(await count("users", "id", s.userId)).toBe(1);
    expect(await count("customers", "id", s.customerId)).toBe(1);
    expect(await count("probe_notes", "user_id", s.userId)).toBe(1);
    expect(await t.database.db.select().from(customers).where(eq(customers.id, s.customerId))).toHaveLength(1);
    expect(await t.database.db.select().from(auditLog).where(eq(auditLog.actorUserId, s.userId))).toHaveLength(0);
    expect(await t.database.db.select().from(refreshTokens).where(eq(refreshTokens.userId, s.userId))).not.toHaveLength(
      0,
    );
    expect(await t.database.db.select().from(emailTokens).where(eq(emailTokens.userId, s.userId))).not.toHaveLength(0);
  });
});
