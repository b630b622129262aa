import type { InjectOptions } from "fastify";
import { expect } from "vitest";
import { bearer, type Session, signUp } from "../auth/helpers.ts";
import { buildTestApp, type TestAppOptions, type TestContext } from "../helpers/app.ts";

/** The real app (real sign-in and JWTs), models not warmed up; listening when a WebSocket test needs it. */
export async function buildAdminApp(
  options: TestAppOptions & { listen?: boolean } = {},
): Promise<TestContext & { baseUrl: string }> {
  const ctx = await buildTestApp({ ...options, env: { MODELS_WARM_UP: "false", ...options.env } });
  let baseUrl = "";
  if (options.listen === true) {
    await ctx.app.listen({ port: 0, host: "127.0.0.1" });
    const addr = ctx.app.server.address();
    if (addr === null || typeof addr === "string") throw new Error("no address");
    baseUrl = `ws://127.0.0.1:${addr.port}`;
  }
  // Start on the shared bus, not while Redis is still connecting.
  for (let i = 0; i < 100 && ctx.redis.client !== null && !ctx.app.platform.invalidation.broadcasting; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return Object.assign(ctx, { baseUrl });
}

/** A customer: its owner's session and an inference key created through the API. */
export interface Tenant extends Session {
  readonly key: string;
}

export async function newTenant(ctx: Pick<TestContext, "app">, tag = "tenant"): Promise<Tenant> {
  const s = await signUp(ctx as TestContext, tag);
  const res = await ctx.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: bearer(s.access),
    payload: { name: "robot", scopes: ["inference"] },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { ...s, key: (res.json() as { key: string }).key };
}

export const suspendReq = (customerId: string, payload: unknown = { reason: "unpaid invoices" }): InjectOptions => ({
  method: "POST",
  url: `/admin/customers/${customerId}/suspend`,
  payload: payload as InjectOptions["payload"],
});

export const unsuspendReq = (customerId: string, payload: unknown = {}): InjectOptions => ({
  method: "POST",
  url: `/admin/customers/${customerId}/unsuspend`,
  payload: payload as InjectOptions["payload"],
});

export const superuserReq = (userId: string, isSuperuser: unknown): InjectOptions => ({
  method: "POST",
  url: `/admin/users/${userId}/superuser`,
  payload: { is_superuser: isSuperuser } as InjectOptions["payload"],
});

/** Runs `req` as the session's user from `ip`. */
export function as(ctx: Pick<TestContext, "app">, s: Session, req: InjectOptions, ip = "198.51.100.7") {
  return ctx.app.inject({ ...req, remoteAddress: ip, headers: { ...(req.headers ?? {}), ...bearer(s.access) } });
}
