import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessTokenDenyList } from "../../src/modules/auth/deny-list.ts";
import type { RedisHandle } from "../../src/platform/redis.ts";
import { buildTestApp } from "../helpers/app.ts";
import { type AuthContext, bearer, buildAuthApp, expectProblem, type Session, signUp } from "./helpers.ts";

let t: AuthContext;
let s: Session;
let key: Uint8Array;

beforeAll(async () => {
  t = await buildAuthApp();
  s = await signUp(t, "jwt");
  key = new TextEncoder().encode(t.config.auth.secretKey);
});
afterAll(async () => {
  await t.close();
});

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

function claims(overrides: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    typ: "access",
    ver: 0,
    sid: randomUUID(),
    sub: s.userId,
    jti: randomUUID(),
    iat: now,
    exp: now + 600,
    iss: t.config.auth.issuer,
    aud: t.config.auth.audience,
    ...overrides,
  };
}

async function forge(
  payload: Record<string, unknown>,
  header: Record<string, unknown> = { alg: "HS256", typ: "at+jwt" },
  signingKey = key,
) {
  return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(signingKey);
}

async function me(token: string) {
  return t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(token) });
}

describe("access token verification", () => {
  it("accepts a token forged exactly like ours (the control case)", async () => {
    const res = await me(await forge(claims()));
    expect(res.statusCode, res.body).toBe(200);
  });

  it("the real token carries the documented claims and header", async () => {
    const [h, p] = s.access.split(".") as [string, string];
    const header = JSON.parse(Buffer.from(h, "base64url").toString());
    const payload = JSON.parse(Buffer.from(p, "base64url").toString());
    expect(header).toEqual({ alg: "HS256", typ: "at+jwt" });
    expect(payload).toMatchObject({
      typ: "access",
      sub: s.userId,
      iss: t.config.auth.issuer,
      aud: t.config.auth.audience,
      ver: 0,
    });
    expect(payload.exp - payload.iat).toBe(t.config.auth.accessTokenTtlSeconds);
    expect(typeof payload.jti).toBe("string");
  });

  const cases: [string, () => Promise<string>][] = [
    ["alg none", async () => `${b64({ alg: "none", typ: "at+jwt" })}.${b64(claims())}.`],
    ["wrong signature", async () => forge(claims(), undefined, new TextEncoder().encode("x".repeat(48)))],
    ["another HMAC algorithm with the right key", async () => forge(claims(), { alg: "HS512", typ: "at+jwt" })],
    ["another payload type", async () => forge(claims({ typ: "refresh" }))],
    ["another header type", async () => forge(claims(), { alg: "HS256", typ: "JWT" })],
    ["stale token version", async () => forge(claims({ ver: 7 }))],
    ["wrong audience", async () => forge(claims({ aud: "someone-else" }))],
    ["wrong issuer", async () => forge(claims({ iss: "https://evil.example" }))],
    [
      "expired",
      async () =>
        forge(claims({ iat: Math.floor(Date.now() / 1000) - 4000, exp: Math.floor(Date.now() / 1000) - 3000 })),
    ],
    ["unknown user", async () => forge(claims({ sub: randomUUID() }))],
    ["missing jti", async () => forge({ ...claims(), jti: undefined })],
    ["garbage", async () => "not.a.jwt"],
    [
      "tampered payload",
      async () => {
        const [h, , sig] = s.access.split(".");
        return `${h}.${b64(claims({ sub: s.userId, ver: 0 }))}.${sig}`;
      },
    ],
  ];
  for (const [name, make] of cases) {
    it(`refuses ${name} with 401 invalid_token`, async () => {
      const res = await me(await make());
      expectProblem(res, 401, "invalid_token");
      expect(res.headers["www-authenticate"]).toContain('error="invalid_token"');
    });
  }

  it("no credential -> 401 unauthorized; an API key on an account route is not a session", async () => {
    expectProblem(await t.app.inject({ method: "GET", url: "/auth/me" }), 401, "unauthorized");
  });

  it("a version bumped by logout-all makes older tokens stale", async () => {
    const other = await signUp(t, "stale");
    const before = await forge(claims({ sub: other.userId, ver: 0 }));
    expect((await me(before)).statusCode).toBe(200);
    await t.app.inject({ method: "POST", url: "/auth/logout-all", headers: bearer(other.access) });
    expectProblem(await me(before), 401, "invalid_token");
    expect((await me(await forge(claims({ sub: other.userId, ver: 1 })))).statusCode).toBe(200);
  });
});

describe("logout deny-list", () => {
  it("a logout on one instance is honoured by another sharing the stores", async () => {
    const prefix = `t:shared:${randomUUID()}:`;
    const a = await buildTestApp({ redisKeyPrefix: prefix });
    const b = await buildTestApp({ database: a.database, redisKeyPrefix: prefix });
    try {
      const email = `shared-${randomUUID()}@example.com`;
      await a.app.inject({
        method: "POST",
        url: "/auth/register",
        payload: { email, password: "correct horse battery staple" },
      });
      const tok = await a.app.inject({
        method: "POST",
        url: "/auth/token",
        payload: { username: email, password: "correct horse battery staple" },
      });
      const access = tok.json().access_token as string;
      const other = (
        await a.app.inject({
          method: "POST",
          url: "/auth/token",
          payload: { username: email, password: "correct horse battery staple" },
        })
      ).json().access_token as string;
      expect((await b.app.inject({ method: "GET", url: "/auth/me", headers: bearer(other) })).statusCode).toBe(200);
      await a.app.inject({ method: "POST", url: "/auth/logout", headers: bearer(access) });
      const res = await b.app.inject({ method: "GET", url: "/auth/me", headers: bearer(access) });
      expect(res.statusCode).toBe(401);
    } finally {
      await b.close();
      await a.close();
    }
  });

  it("falls back to the database when Redis fails", async () => {
    const failing = {
      set: () => Promise.reject(new Error("redis down")),
      exists: () => Promise.reject(new Error("redis down")),
    };
    const broken = { client: failing, keyPrefix: "x:" } as unknown as RedisHandle;
    const writer = new AccessTokenDenyList(t.database.db, broken);
    const reader = new AccessTokenDenyList(t.database.db, broken, { negativeTtlMs: 0 });
    const jti = randomUUID();
    expect(await reader.has(jti)).toBe(false);
    await writer.add(jti, Math.floor(Date.now() / 1000) + 60);
    expect(await reader.has(jti)).toBe(true);
    const expired = randomUUID();
    await writer.add(expired, Math.floor(Date.now() / 1000) - 10);
    expect(await new AccessTokenDenyList(t.database.db, broken).has(expired)).toBe(false);
  });
});
