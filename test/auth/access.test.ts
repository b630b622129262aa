import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/modules/auth/password.ts";
import { UsersRepo } from "../../src/modules/users/users.repo.ts";
import { type AuthContext, bearer, buildAuthApp, expectProblem, login, PASSWORD, uniqueEmail } from "./helpers.ts";

let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp();
});
afterAll(async () => {
  await t.close();
});

const PROTECTED: [string, string, object | undefined][] = [
  ["GET", "/auth/me", undefined],
  ["PATCH", "/auth/me", { full_name: "x" }],
  ["DELETE", "/auth/me", { password: PASSWORD }],
  ["POST", "/auth/me/password", { current_password: PASSWORD, new_password: "another passphrase" }],
  ["POST", "/auth/logout", undefined],
  ["POST", "/auth/logout-all", undefined],
  ["POST", "/auth/verify-email/request", undefined],
];

describe("protected routes", () => {
  for (const [method, url, payload] of PROTECTED) {
    it(`${method} ${url}: no credential -> 401, garbage -> 401, an API key is not a session`, async () => {
      const none = await t.app.inject({ method: method as "GET", url, ...(payload ? { payload } : {}) });
      expectProblem(none, 401, "unauthorized");
      const junk = await t.app.inject({
        method: method as "GET",
        url,
        headers: bearer("junk"),
        ...(payload ? { payload } : {}),
      });
      expectProblem(junk, 401, "invalid_token");
      const key = await t.app.inject({
        method: method as "GET",
        url,
        headers: { "x-api-key": "vla_live_abc" },
        ...(payload ? { payload } : {}),
      });
      expect(key.statusCode).toBeGreaterThanOrEqual(401);
      expect(key.statusCode).toBeLessThanOrEqual(403);
    });
  }
});

describe("superusers", () => {
  it("exist only through the CLI path, and their profile says so", async () => {
    const email = uniqueEmail("admin");
    await new UsersRepo(t.database.db).createAccount({
      email,
      passwordHash: await hashPassword(PASSWORD),
      isSuperuser: true,
      tier: "enterprise",
    });
    const tok = await login(t, email, PASSWORD);
    const me = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(tok.json().access_token) });
    expect(me.json()).toMatchObject({ is_superuser: true, tier: "enterprise", role: "owner" });
  });
});

describe("email request throttles", () => {
  it("password reset requests: at most 5 emails per address per hour, same answer after; 429 per IP past 30", async () => {
    const email = uniqueEmail("reset-cap");
    const reg = await t.app.inject({ method: "POST", url: "/auth/register", payload: { email, password: PASSWORD } });
    expect(reg.statusCode).toBe(201);
    const ip = "10.77.0.1";
    for (let i = 0; i < 7; i++) {
      const res = await t.app.inject({
        method: "POST",
        url: "/auth/password-reset/request",
        payload: { email },
        remoteAddress: ip,
      });
      expect(res.statusCode).toBe(202);
    }
    expect(await t.app.platform.email.drain(5_000)).toBe(0);
    expect(t.smtp.messages.filter((m) => m.to.includes(email) && /reset/i.test(m.subject))).toHaveLength(5);
    let last = 0;
    for (let i = 0; i < 24; i++) {
      last = (
        await t.app.inject({
          method: "POST",
          url: "/auth/password-reset/request",
          payload: { email: uniqueEmail("x") },
          remoteAddress: ip,
        })
      ).statusCode;
    }
    expect(last).toBe(429);
  });
});
