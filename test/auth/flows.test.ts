import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emailTokens, refreshTokens, users } from "../../src/platform/db/schema/index.ts";
import { linkIn } from "../helpers/smtp.ts";
import {
  type AuthContext,
  bearer,
  buildAuthApp,
  expectProblem,
  login,
  PASSWORD,
  PUBLIC_BASE,
  register,
  signUp,
  uniqueEmail,
} from "./helpers.ts";

let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp();
});
afterAll(async () => {
  await t.close();
});

describe("registration and profile", () => {
  it("creates a user and a free customer it owns, never returns the hash, and emails a verification link", async () => {
    const email = uniqueEmail("reg");
    const res = await register(t, {
      email: `  ${email.toUpperCase()} `,
      password: PASSWORD,
      full_name: "Ada Lovelace",
      company: "Analytical Robotics",
    });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json();
    expect(body).toMatchObject({
      email,
      full_name: "Ada Lovelace",
      company: "Analytical Robotics",
      role: "owner",
      tier: "free",
      email_verified: false,
      is_superuser: false,
    });
    expect(res.body).not.toMatch(/argon2|password/i);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, body.id));
    expect(row?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);

    const mail = await t.smtp.waitForMail(email, /confirm your email/i);
    expect(mail.from).toBe("no-reply@example.test");
    expect(mail.raw).toMatch(/Content-Type: text\/html/i);
    expect(mail.raw).toMatch(/Content-Type: text\/plain/i);
    const link = linkIn(mail, PUBLIC_BASE);
    expect(link.origin).toBe(PUBLIC_BASE);
    expect(link.pathname).toBe("/verify-email");
    const token = link.searchParams.get("token") as string;
    const confirm = await t.app.inject({ method: "POST", url: "/auth/verify-email/confirm", payload: { token } });
    expect(confirm.statusCode, confirm.body).toBe(204);

    const tok = await login(t, email, PASSWORD);
    const me = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(tok.json().access_token) });
    expect(me.json()).toMatchObject({ email, email_verified: true, customer_id: body.customer_id, tier: "free" });

    // Single use.
    const again = await t.app.inject({ method: "POST", url: "/auth/verify-email/confirm", payload: { token } });
    expectProblem(again, 400, "invalid_email_token");
  });

  it("treats a taken email (any case, any spacing) as 409 email_taken", async () => {
    const s = await signUp(t, "taken");
    const res = await register(t, { email: ` ${s.email.toUpperCase()}`, password: "another good passphrase" });
    const body = expectProblem(res, 409, "email_taken");
    expect(JSON.stringify(body)).not.toContain(s.userId);
  });

  it("GET /auth/me returns the profile with scopes of an owner; PATCH changes only full_name", async () => {
    const s = await signUp(t, "me");
    const me = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ id: s.userId, customer_id: s.customerId, is_superuser: false });
    const patched = await t.app.inject({
      method: "PATCH",
      url: "/auth/me",
      headers: bearer(s.access),
      payload: { full_name: "  Grace Hopper " },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().full_name).toBe("Grace Hopper");
    const sneaky = await t.app.inject({
      method: "PATCH",
      url: "/auth/me",
      headers: bearer(s.access),
      payload: { full_name: "x", is_superuser: true, tier: "enterprise" },
    });
    const problem = expectProblem(sneaky, 422, "validation_failed");
    expect(JSON.stringify(problem.errors)).toContain("/is_superuser");
    const after = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) });
    expect(after.json()).toMatchObject({ is_superuser: false, tier: "free", full_name: "Grace Hopper" });
  });

  it("resends the verification email on request and skips it once verified", async () => {
    const s = await signUp(t, "resend");
    await t.smtp.waitForMail(s.email, /confirm your email/i);
    const res = await t.app.inject({ method: "POST", url: "/auth/verify-email/request", headers: bearer(s.access) });
    expect(res.statusCode, res.body).toBe(202);
    const second = await t.smtp.waitForMail(s.email, /confirm your email/i);
    const token = linkIn(second, PUBLIC_BASE).searchParams.get("token") as string;
    expect(
      (await t.app.inject({ method: "POST", url: "/auth/verify-email/confirm", payload: { token } })).statusCode,
    ).toBe(204);
    const before = t.smtp.messages.length;
    const again = await t.app.inject({ method: "POST", url: "/auth/verify-email/request", headers: bearer(s.access) });
    expect(again.statusCode).toBe(202);
    expect(await t.app.platform.email.drain(2_000)).toBe(0);
    expect(t.smtp.messages.length).toBe(before);
  });
});

describe("sign-in, refresh and sign-out", () => {
  it("issues a bearer pair by form post and by JSON", async () => {
    const s = await signUp(t, "token");
    const viaJson = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      payload: { username: s.email, password: PASSWORD },
    });
    expect(viaJson.statusCode, viaJson.body).toBe(200);
    const body = viaJson.json();
    expect(body.token_type).toBe("bearer");
    expect(body.expires_in).toBe(t.config.auth.accessTokenTtlSeconds);
    expect(body.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(viaJson.headers["cache-control"]).toBe("no-store");
    const bad = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      payload: { username: s.email, password: "x" },
    });
    expect(bad.headers["cache-control"]).toBe("no-store");
    const stored = await t.database.db.select().from(refreshTokens).where(eq(refreshTokens.userId, s.userId));
    expect(stored.map((r) => r.tokenHash)).not.toContain(body.refresh_token);
    expect(stored.every((r) => /^[0-9a-f]{64}$/.test(r.tokenHash))).toBe(true);
  });

  it("rotates refresh tokens; the spent one is refused; reuse revokes the whole family", async () => {
    const s = await signUp(t, "refresh");
    const r1 = await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } });
    expect(r1.statusCode, r1.body).toBe(200);
    const second = r1.json();
    expect(second.refresh_token).not.toBe(s.refresh);
    const me = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(second.access_token) });
    expect(me.statusCode).toBe(200);

    // The stolen first token comes back: refused, and the family dies with it.
    const reuse = await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } });
    expectProblem(reuse, 401, "invalid_refresh_token");
    const legit = await t.app.inject({
      method: "POST",
      url: "/auth/refresh",
      payload: { refresh_token: second.refresh_token },
    });
    expectProblem(legit, 401, "invalid_refresh_token");
    const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/vla_auth_refresh_reuse_total [1-9]/);

    // Other sessions of the same user are untouched.
    const other = await login(t, s.email, PASSWORD);
    const r2 = await t.app.inject({
      method: "POST",
      url: "/auth/refresh",
      payload: { refresh_token: other.json().refresh_token },
    });
    expect(r2.statusCode).toBe(200);
  });

  it("refuses an unknown or expired refresh token", async () => {
    const unknown = await t.app.inject({
      method: "POST",
      url: "/auth/refresh",
      payload: { refresh_token: "A".repeat(43) },
    });
    expectProblem(unknown, 401, "invalid_refresh_token");
    const s = await signUp(t, "expired-refresh");
    await t.database.db
      .update(refreshTokens)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(refreshTokens.userId, s.userId));
    const res = await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } });
    expectProblem(res, 401, "invalid_refresh_token");
  });

  it("logout kills the access token at once and its refresh family, not other sessions", async () => {
    const s = await signUp(t, "logout");
    const other = (await login(t, s.email, PASSWORD)).json();
    const out = await t.app.inject({ method: "POST", url: "/auth/logout", headers: bearer(s.access) });
    expect(out.statusCode, out.body).toBe(204);
    expectProblem(
      await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) }),
      401,
      "invalid_token",
    );
    expectProblem(
      await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } }),
      401,
      "invalid_refresh_token",
    );
    const still = await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(other.access_token) });
    expect(still.statusCode).toBe(200);
  });

  it("logout-all ends every session", async () => {
    const s = await signUp(t, "logout-all");
    const other = (await login(t, s.email, PASSWORD)).json();
    const out = await t.app.inject({ method: "POST", url: "/auth/logout-all", headers: bearer(s.access) });
    expect(out.statusCode).toBe(204);
    for (const token of [s.access, other.access_token]) {
      expectProblem(
        await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(token) }),
        401,
        "invalid_token",
      );
    }
    for (const refresh_token of [s.refresh, other.refresh_token]) {
      expectProblem(
        await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token } }),
        401,
        "invalid_refresh_token",
      );
    }
    expect((await login(t, s.email, PASSWORD)).statusCode).toBe(200);
  });
});

describe("passwords", () => {
  it("change: needs the current password, ends other sessions, returns a fresh pair, emails a notice", async () => {
    const s = await signUp(t, "change");
    const wrong = await t.app.inject({
      method: "POST",
      url: "/auth/me/password",
      headers: bearer(s.access),
      payload: { current_password: "not my password", new_password: "a brand new passphrase" },
    });
    const problem = expectProblem(wrong, 422, "validation_failed");
    expect(problem.errors).toEqual([expect.objectContaining({ path: "/current_password" })]);

    const res = await t.app.inject({
      method: "POST",
      url: "/auth/me/password",
      headers: bearer(s.access),
      payload: { current_password: PASSWORD, new_password: "a brand new passphrase" },
    });
    expect(res.statusCode, res.body).toBe(200);
    expectProblem(
      await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) }),
      401,
      "invalid_token",
    );
    expect(
      (await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(res.json().access_token) })).statusCode,
    ).toBe(200);
    expectProblem(
      await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } }),
      401,
      "invalid_refresh_token",
    );
    expectProblem(await login(t, s.email, PASSWORD), 401, "invalid_credentials");
    expect((await login(t, s.email, "a brand new passphrase")).statusCode).toBe(200);
    await t.smtp.waitForMail(s.email, /password was changed/i);
  });

  it("reset: generic answer, emailed link from PUBLIC_BASE_URL, single use, sessions end, notice sent", async () => {
    const s = await signUp(t, "reset");
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/request",
      headers: { host: "evil.example.org" },
      payload: { email: s.email.toUpperCase() },
    });
    expect(res.statusCode, res.body).toBe(202);
    const mail = await t.smtp.waitForMail(s.email, /reset your password/i);
    expect(mail.decoded).not.toContain("evil.example.org");
    const link = linkIn(mail, PUBLIC_BASE);
    expect(link.pathname).toBe("/reset-password");
    const token = link.searchParams.get("token") as string;
    const [stored] = await t.database.db.select().from(emailTokens).where(eq(emailTokens.userId, s.userId));
    expect(JSON.stringify(stored)).not.toContain(token);

    const weak = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/confirm",
      payload: { token, new_password: "password123" },
    });
    expectProblem(weak, 422, "validation_failed");

    const ok = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/confirm",
      payload: { token, new_password: "reset passphrase 2026" },
    });
    expect(ok.statusCode, ok.body).toBe(204);
    expectProblem(
      await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) }),
      401,
      "invalid_token",
    );
    expectProblem(
      await t.app.inject({ method: "POST", url: "/auth/refresh", payload: { refresh_token: s.refresh } }),
      401,
      "invalid_refresh_token",
    );
    expect((await login(t, s.email, "reset passphrase 2026")).statusCode).toBe(200);
    await t.smtp.waitForMail(s.email, /password was changed/i);

    const reuse = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/confirm",
      payload: { token, new_password: "yet another passphrase" },
    });
    expectProblem(reuse, 400, "invalid_email_token");
  });

  it("reset: an expired token is refused", async () => {
    const s = await signUp(t, "reset-expired");
    await t.app.inject({ method: "POST", url: "/auth/password-reset/request", payload: { email: s.email } });
    const mail = await t.smtp.waitForMail(s.email, /reset your password/i);
    const token = linkIn(mail, PUBLIC_BASE).searchParams.get("token") as string;
    await t.database.db
      .update(emailTokens)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(emailTokens.userId, s.userId));
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/confirm",
      payload: { token, new_password: "reset passphrase 2026" },
    });
    expectProblem(res, 400, "invalid_email_token");
    expect((await login(t, s.email, PASSWORD)).statusCode).toBe(200);
  });

  it("a verification token cannot reset a password", async () => {
    const s = await signUp(t, "purpose");
    const mail = await t.smtp.waitForMail(s.email, /confirm your email/i);
    const token = linkIn(mail, PUBLIC_BASE).searchParams.get("token") as string;
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/password-reset/confirm",
      payload: { token, new_password: "reset passphrase 2026" },
    });
    expectProblem(res, 400, "invalid_email_token");
  });
});
