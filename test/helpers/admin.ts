import { eq } from "drizzle-orm";
import type { InjectOptions } from "fastify";
import { expect } from "vitest";
import { users } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, login, PASSWORD, register, type Session, uniqueEmail } from "../auth/helpers.ts";
import type { TestContext } from "./app.ts";

/** Registers an account, makes its user a superuser in the database, then signs in (the flag is read per request). */
export async function signUpSuperuser(ctx: Pick<TestContext, "app" | "database">, tag = "root"): Promise<Session> {
  const email = uniqueEmail(tag);
  const reg = await register(ctx as TestContext, { email, password: PASSWORD });
  expect(reg.statusCode, reg.body).toBe(201);
  await ctx.database.db.update(users).set({ isSuperuser: true }).where(eq(users.id, reg.json().id));
  const tok = await login(ctx as TestContext, email, PASSWORD);
  expect(tok.statusCode, tok.body).toBe(200);
  return {
    email,
    userId: reg.json().id,
    customerId: reg.json().customer_id,
    access: tok.json().access_token,
    refresh: tok.json().refresh_token,
  };
}

/** An `admin`-scope API key of the session's customer (a customer's admin, not an operator). */
export async function adminScopeKey(ctx: Pick<TestContext, "app">, owner: Session): Promise<string> {
  const res = await ctx.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: bearer(owner.access),
    payload: { name: "customer-admin", scopes: ["inference", "admin"] },
  });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { key: string }).key;
}

/**
 * The shared operator-only check for every `/admin/*` route: without credentials 401, with a
 * customer owner's session 403 `forbidden`, with that customer's `admin`-scope API key 403
 * `forbidden`. Nothing is changed by the refused calls (the caller checks state where it matters).
 * `owner` must be a plain (non-superuser) account.
 */
export async function expectSuperuserOnly(
  ctx: Pick<TestContext, "app">,
  owner: Session,
  requests: readonly InjectOptions[],
): Promise<void> {
  const key = await adminScopeKey(ctx, owner);
  for (const req of requests) {
    const base = { ...req, headers: { ...(req.headers ?? {}) } };
    delete base.headers.authorization;
    delete base.headers["x-api-key"];
    const label = `${req.method ?? "GET"} ${req.url}`;
    const anon = await ctx.app.inject(base);
    expect(anon.statusCode, `${label} without credentials: ${anon.body}`).toBe(401);
    const asOwner = await ctx.app.inject({ ...base, headers: { ...base.headers, ...bearer(owner.access) } });
    expect(asOwner.statusCode, `${label} as a customer owner: ${asOwner.body}`).toBe(403);
    expectProblem(asOwner, 403, "forbidden");
    const asKey = await ctx.app.inject({ ...base, headers: { ...base.headers, "x-api-key": key } });
    expect(asKey.statusCode, `${label} with an admin-scope key: ${asKey.body}`).toBe(403);
    expectProblem(asKey, 403, "forbidden");
  }
}
