import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuthContext,
  bearer,
  buildAuthApp,
  expectProblem,
  PASSWORD,
  type Session,
  signUp,
  uniqueEmail,
} from "./helpers.ts";

let t: AuthContext;
let s: Session;
beforeAll(async () => {
  t = await buildAuthApp();
  s = await signUp(t, "inputs");
});
afterAll(async () => {
  await t.close();
});

type Case = {
  name: string;
  url: string;
  method?: "POST" | "PATCH" | "DELETE";
  auth?: boolean;
  payload: unknown;
  status: number;
  code: string;
  path?: string;
};

const tenKb = "p".repeat(10 * 1024);

const cases: Case[] = [
  {
    name: "malformed email",
    url: "/auth/register",
    payload: { email: "not-an-email", password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/email",
  },
  {
    name: "email with spaces inside",
    url: "/auth/register",
    payload: { email: "a b@example.com", password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/email",
  },
  {
    name: "10 KB password on register",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: tenKb },
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
  {
    name: "short password",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: "short" },
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
  {
    name: "common password",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: "Password123" },
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
  {
    name: "missing password",
    url: "/auth/register",
    payload: { email: uniqueEmail() },
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
  {
    name: "missing email",
    url: "/auth/register",
    payload: { password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/email",
  },
  {
    name: "is_superuser on register",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: PASSWORD, is_superuser: true },
    status: 422,
    code: "validation_failed",
    path: "/is_superuser",
  },
  {
    name: "tier on register",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: PASSWORD, tier: "enterprise" },
    status: 422,
    code: "validation_failed",
    path: "/tier",
  },
  {
    name: "quota on register",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: PASSWORD, quota_per_month: 1e9 },
    status: 422,
    code: "validation_failed",
    path: "/quota_per_month",
  },
  {
    name: "stripe id on register",
    url: "/auth/register",
    payload: { email: uniqueEmail(), password: PASSWORD, stripe_customer_id: "cus_x" },
    status: 422,
    code: "validation_failed",
    path: "/stripe_customer_id",
  },
  { name: "body not an object", url: "/auth/register", payload: ["x"], status: 422, code: "validation_failed" },
  {
    name: "10 KB password on sign-in",
    url: "/auth/token",
    payload: { username: "a@example.com", password: tenKb },
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
  {
    name: "missing username",
    url: "/auth/token",
    payload: { password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/username",
  },
  {
    name: "other grant type",
    url: "/auth/token",
    payload: { grant_type: "client_credentials", username: "a@example.com", password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/grant_type",
  },
  {
    name: "malformed refresh token",
    url: "/auth/refresh",
    payload: { refresh_token: "has spaces and !!" },
    status: 422,
    code: "validation_failed",
    path: "/refresh_token",
  },
  {
    name: "missing refresh token",
    url: "/auth/refresh",
    payload: {},
    status: 422,
    code: "validation_failed",
    path: "/refresh_token",
  },
  {
    name: "reset with malformed email",
    url: "/auth/password-reset/request",
    payload: { email: "@@" },
    status: 422,
    code: "validation_failed",
    path: "/email",
  },
  {
    name: "reset confirm without token",
    url: "/auth/password-reset/confirm",
    payload: { new_password: PASSWORD },
    status: 422,
    code: "validation_failed",
    path: "/token",
  },
  {
    name: "reset confirm with 10 KB password",
    url: "/auth/password-reset/confirm",
    payload: { token: "A".repeat(43), new_password: tenKb },
    status: 422,
    code: "validation_failed",
    path: "/new_password",
  },
  {
    name: "verify confirm without token",
    url: "/auth/verify-email/confirm",
    payload: {},
    status: 422,
    code: "validation_failed",
    path: "/token",
  },
  {
    name: "change password missing current",
    url: "/auth/me/password",
    auth: true,
    payload: { new_password: "a brand new passphrase" },
    status: 422,
    code: "validation_failed",
    path: "/current_password",
  },
  {
    name: "change to a short password",
    url: "/auth/me/password",
    auth: true,
    payload: { current_password: PASSWORD, new_password: "short" },
    status: 422,
    code: "validation_failed",
    path: "/new_password",
  },
  {
    name: "profile: tier",
    url: "/auth/me",
    method: "PATCH",
    auth: true,
    payload: { tier: "pro" },
    status: 422,
    code: "validation_failed",
    path: "/tier",
  },
  {
    name: "delete without password",
    url: "/auth/me",
    method: "DELETE",
    auth: true,
    payload: {},
    status: 422,
    code: "validation_failed",
    path: "/password",
  },
];

describe("bad input answers problem+json with field paths", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const res = await t.app.inject({
        method: c.method ?? "POST",
        url: c.url,
        payload: c.payload as object,
        headers: c.auth === true ? bearer(s.access) : {},
        remoteAddress: "10.9.9.9",
      });
      const body = expectProblem(res, c.status, c.code);
      if (c.path !== undefined) {
        expect(body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ in: "body", path: c.path })]));
      }
    });
  }

  it("the password policy message is readable", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/register",
      payload: { email: uniqueEmail(), password: "iloveyou1" },
    });
    const body = expectProblem(res, 422, "validation_failed");
    expect(JSON.stringify(body.errors)).toContain("most common passwords");
  });

  it("malformed JSON -> 400 invalid_json", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/register",
      headers: { "content-type": "application/json" },
      payload: '{"email": "a@example.com", "password": ',
    });
    expectProblem(res, 400, "invalid_json");
  });

  it("wrong content type -> 415 on JSON routes, and a form post cannot register", async () => {
    const text = await t.app.inject({
      method: "POST",
      url: "/auth/register",
      headers: { "content-type": "text/plain" },
      payload: "email=a@example.com",
    });
    expectProblem(text, 415, "unsupported_media_type");
    const form = await t.app.inject({
      method: "POST",
      url: "/auth/register",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: `email=${encodeURIComponent(uniqueEmail())}&password=${encodeURIComponent(PASSWORD)}`,
    });
    expectProblem(form, 415, "unsupported_media_type");
    const xml = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/xml" },
      payload: "<x/>",
    });
    expectProblem(xml, 415, "unsupported_media_type");
  });

  it("the token endpoint accepts the fields OAuth2 clients add, and ignores them", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: new URLSearchParams({
        grant_type: "password",
        username: s.email,
        password: PASSWORD,
        scope: "admin",
        client_id: "swagger",
        client_secret: "",
      }).toString(),
    });
    expect(res.statusCode, res.body).toBe(200);
  });

  it("a body can never make a superuser: the profile stays ordinary", async () => {
    const email = uniqueEmail("nosu");
    await t.app.inject({
      method: "POST",
      url: "/auth/register",
      payload: { email, password: PASSWORD, is_superuser: true },
    });
    const tok = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      payload: { username: email, password: PASSWORD },
    });
    expectProblem(tok, 401, "invalid_credentials");
  });
});
