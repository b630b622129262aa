import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { buildTestApp, type TestAppOptions, type TestContext } from "../helpers/app.ts";
import { TestSmtp } from "../helpers/smtp.ts";

export const PUBLIC_BASE = "https://app.example.test";
export const PASSWORD = "correct horse battery staple";

export interface AuthContext extends TestContext {
  readonly smtp: TestSmtp;
}

/** The app wired to a real SMTP server on loopback, with links built from PUBLIC_BASE. */
export async function buildAuthApp(options: TestAppOptions = {}): Promise<AuthContext> {
  const smtp = await new TestSmtp().start();
  const ctx = await buildTestApp({
    ...options,
    env: {
      SMTP_URL: smtp.url,
      PUBLIC_BASE_URL: PUBLIC_BASE,
      EMAIL_FROM: "VLA <no-reply@example.test>",
      ...options.env,
    },
  });
  return {
    ...ctx,
    smtp,
    async close() {
      await ctx.close();
      await smtp.close();
    },
  };
}

export function uniqueEmail(tag = "user"): string {
  return `${tag}-${randomBytes(4).toString("hex")}@example.com`;
}

type Inject = TestContext["app"]["inject"];
type Res = Awaited<ReturnType<Inject>>;

export async function register(
  ctx: TestContext,
  body: Record<string, unknown>,
  remoteAddress = "10.0.0.1",
): Promise<Res> {
  return ctx.app.inject({ method: "POST", url: "/auth/register", payload: body, remoteAddress });
}

export async function login(
  ctx: TestContext,
  username: string,
  password: string,
  remoteAddress = "10.0.0.2",
): Promise<Res> {
  return ctx.app.inject({
    method: "POST",
    url: "/auth/token",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    payload: new URLSearchParams({ grant_type: "password", username, password }).toString(),
    remoteAddress,
  });
}

export interface Session {
  readonly email: string;
  readonly userId: string;
  readonly customerId: string;
  readonly access: string;
  readonly refresh: string;
}

/** Registers a fresh account and signs in. */
export async function signUp(ctx: TestContext, tag = "user", extra: Record<string, unknown> = {}): Promise<Session> {
  const email = uniqueEmail(tag);
  const reg = await register(ctx, { email, password: PASSWORD, ...extra });
  expect(reg.statusCode, reg.body).toBe(201);
  const tok = await login(ctx, email, PASSWORD);
  expect(tok.statusCode, tok.body).toBe(200);
  return {
    email,
    userId: reg.json().id,
    customerId: reg.json().customer_id,
    access: tok.json().access_token,
    refresh: tok.json().refresh_token,
  };
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export function expectProblem(res: Res, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.code).toBe(code);
  return body;
}
