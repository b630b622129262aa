import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkIn } from "../helpers/smtp.ts";
import { type AuthContext, bearer, buildAuthApp, login, PASSWORD, PUBLIC_BASE, signUp } from "./helpers.ts";

let t: AuthContext;
beforeAll(async () => {
  t = await buildAuthApp();
});
afterAll(async () => {
  await t.close();
});

const form = (fields: Record<string, string>) => ({
  headers: { "content-type": "application/x-www-form-urlencoded" },
  payload: new URLSearchParams(fields).toString(),
});

/** Opens the emailed link the way a browser would (path and query on this server). */
async function open(link: URL) {
  return t.app.inject({ method: "GET", url: `${link.pathname}${link.search}` });
}

function hiddenToken(html: string): string {
  const m = /name="token" value="([^"]*)"/.exec(html);
  if (m === null) throw new Error(`no token field in page:\n${html}`);
  return m[1] as string;
}

describe("pages the emailed links open", () => {
  it("verification: opening the link changes nothing; the button confirms", async () => {
    const s = await signUp(t, "page-verify");
    const link = linkIn(await t.smtp.waitForMail(s.email, /confirm your email/i), PUBLIC_BASE);
    const page = await open(link);
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    expect(page.body).not.toContain("<script");
    const me = async () =>
      (await t.app.inject({ method: "GET", url: "/auth/me", headers: bearer(s.access) })).json().email_verified;
    expect(await me()).toBe(false);
    const token = hiddenToken(page.body);
    expect(token).toBe(link.searchParams.get("token"));
    const done = await t.app.inject({ method: "POST", url: "/verify-email", ...form({ token }) });
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain("Email address confirmed");
    expect(await me()).toBe(true);
    const again = await t.app.inject({ method: "POST", url: "/verify-email", ...form({ token }) });
    expect(again.statusCode).toBe(400);
    expect(again.body).toContain("This link does not work");
  });

  it("reset: the form refuses a weak password, keeps the token, then sets the new one", async () => {
    const s = await signUp(t, "page-reset");
    await t.app.inject({ method: "POST", url: "/auth/password-reset/request", payload: { email: s.email } });
    const link = linkIn(await t.smtp.waitForMail(s.email, /reset your password/i), PUBLIC_BASE);
    const page = await open(link);
    expect(page.statusCode).toBe(200);
    const token = hiddenToken(page.body);
    const weak = await t.app.inject({
      method: "POST",
      url: "/reset-password",
      ...form({ token, new_password: "password1" }),
    });
    expect(weak.statusCode).toBe(422);
    expect(weak.body).toContain("most common passwords");
    expect(hiddenToken(weak.body)).toBe(token);
    const ok = await t.app.inject({
      method: "POST",
      url: "/reset-password",
      ...form({ token, new_password: "page reset passphrase" }),
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain("Password changed");
    expect((await login(t, s.email, "page reset passphrase")).statusCode).toBe(200);
    expect((await login(t, s.email, PASSWORD)).statusCode).toBe(401);
  });

  it("escapes whatever arrives in the query and refuses non-form posts", async () => {
    const page = await t.app.inject({
      method: "GET",
      url: `/reset-password?token=${encodeURIComponent('"><script>x</script>')}`,
    });
    expect(page.body).not.toContain("<script>");
    const json = await t.app.inject({ method: "POST", url: "/verify-email", payload: { token: "x".repeat(43) } });
    expect(json.statusCode).toBe(415);
  });
});
