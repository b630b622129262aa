import bcrypt from "bcryptjs";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UsersRepo } from "../../src/modules/users/users.repo.ts";
import { users } from "../../src/platform/db/schema/index.ts";
import { type AuthContext, buildAuthApp, expectProblem, login, PASSWORD, signUp, uniqueEmail } from "./helpers.ts";

let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp();
});
afterAll(async () => {
  await t.close();
});

/** The parts of a problem response that must not differ between "no such user" and "wrong password". */
function shape(res: Awaited<ReturnType<typeof login>>) {
  const { request_id: _id, ...body } = res.json() as Record<string, unknown>;
  const { "x-request-id": _r, date: _d, "content-length": length, ...headers } = res.headers;
  return { status: res.statusCode, body, headers, length };
}

describe("enumeration resistance", () => {
  it("sign-in: unknown email and wrong password give the same status, body and headers", async () => {
    const s = await signUp(t, "enum");
    const unknown = await login(t, uniqueEmail("ghost"), "wrong password here", "10.1.0.1");
    const wrong = await login(t, s.email, "wrong password here", "10.1.0.2");
    expectProblem(unknown, 401, "invalid_credentials");
    expect(shape(unknown)).toEqual(shape(wrong));
  });

  it("password reset: the same answer for unknown and known addresses; only the known one gets mail", async () => {
    const s = await signUp(t, "enum-reset");
    const ghost = uniqueEmail("ghost");
    const a = await t.app.inject({ method: "POST", url: "/auth/password-reset/request", payload: { email: ghost } });
    const b = await t.app.inject({ method: "POST", url: "/auth/password-reset/request", payload: { email: s.email } });
    expect(a.statusCode).toBe(202);
    expect(shape(a)).toEqual(shape(b));
    await t.smtp.waitForMail(s.email, /reset your password/i);
    expect(await t.app.platform.email.drain(2_000)).toBe(0);
    expect(t.smtp.messages.some((m) => m.to.includes(ghost))).toBe(false);
  });
});

describe("sign-in throttling", () => {
  it("blocks an account with growing delays after 5 failures, for known and unknown emails alike", async () => {
    const s = await signUp(t, "throttle");
    const ghost = uniqueEmail("ghost-throttle");
    for (const email of [s.email, ghost]) {
      for (let i = 0; i < 5; i++) {
        // Different IPs: this is the per-account limit.
        expectProblem(await login(t, email, `wrong-${i}-password`, `10.2.0.${i + 1}`), 401, "invalid_credentials");
      }
      const first = await login(t, email, "wrong-again-password", "10.2.1.1");
      expectProblem(first, 401, "invalid_credentials");
      const blocked = await login(t, email, PASSWORD, "10.2.1.2");
      expectProblem(blocked, 429, "rate_limited");
      expect(Number(blocked.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    }
    const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/vla_auth_logins_total\{result="throttled"\} [1-9]/);
    expect(metrics).toMatch(/vla_auth_logins_total\{result="failure"\} [1-9]/);
    // The delay is short: it does not lock the owner out for long (1 s after the 6th failure).
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await login(t, s.email, PASSWORD, "10.2.1.3")).statusCode).toBe(200);
  });

  it("a successful sign-in clears the account's failures", async () => {
    const s = await signUp(t, "throttle-reset");
    for (let i = 0; i < 4; i++) await login(t, s.email, "wrong password x", "10.3.0.1");
    expect((await login(t, s.email, PASSWORD, "10.3.0.1")).statusCode).toBe(200);
    for (let i = 0; i < 5; i++) {
      expectProblem(await login(t, s.email, "wrong password y", "10.3.0.1"), 401, "invalid_credentials");
    }
  });

  it("blocks an IP spraying many accounts after 20 failures", async () => {
    const ip = "10.4.0.1";
    for (let i = 0; i < 20; i++) {
      expectProblem(await login(t, uniqueEmail(`spray${i}`), "some password", ip), 401, "invalid_credentials");
    }
    expectProblem(await login(t, uniqueEmail("spray-x"), "some password", ip), 401, "invalid_credentials");
    const blocked = await login(t, uniqueEmail("spray-y"), "some password", ip);
    expectProblem(blocked, 429, "rate_limited");
    expect(blocked.headers["retry-after"]).toBeDefined();
    // Another IP is unaffected.
    expectProblem(await login(t, uniqueEmail("spray-z"), "some password", "10.4.0.2"), 401, "invalid_credentials");
  });

  it("registration is throttled per IP, which bounds probing for taken emails", async () => {
    const ip = "10.5.0.1";
    const taken = (await signUp(t, "probe")).email;
    const statuses: number[] = [];
    for (let i = 0; i < 31; i++) {
      const res = await t.app.inject({
        method: "POST",
        url: "/auth/register",
        payload: { email: taken, password: PASSWORD },
        remoteAddress: ip,
      });
      statuses.push(res.statusCode);
    }
    expect(statuses.slice(0, 30).every((s) => s === 409)).toBe(true);
    expect(statuses[30]).toBe(429);
  });
});

describe("legacy bcrypt hashes", () => {
  it("verify, then are rehashed to Argon2id on the next good sign-in", async () => {
    const email = uniqueEmail("legacy");
    const repo = new UsersRepo(t.database.db);
    const created = await repo.createAccount({ email, passwordHash: await bcrypt.hash(PASSWORD, 10) });
    const id = created?.user.id as string;
    expectProblem(await login(t, email, "wrong password here", "10.6.0.1"), 401, "invalid_credentials");
    const [before] = await t.database.db.select().from(users).where(eq(users.id, id));
    expect(before?.passwordHash).toMatch(/^\$2[ab]\$/);
    expect((await login(t, email, PASSWORD, "10.6.0.1")).statusCode).toBe(200);
    const [after] = await t.database.db.select().from(users).where(eq(users.id, id));
    expect(after?.passwordHash).toMatch(/^\$argon2id\$/);
    expect((await login(t, email, PASSWORD, "10.6.0.1")).statusCode).toBe(200);
  });
});
