import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

let t: TestContext;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t.close();
});

async function signUp(email: string): Promise<string> {
  const password = "a long and unusual passphrase";
  const reg = await t.app.inject({ method: "POST", url: "/auth/register", payload: { email, password } });
  expect(reg.statusCode).toBe(201);
  const tok = await t.app.inject({
    method: "POST",
    url: "/auth/token",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    payload: `username=${encodeURIComponent(email)}&password=${encodeURIComponent(password)}`,
  });
  expect(tok.statusCode).toBe(200);
  return tok.json().access_token as string;
}

describe("API keys managed through a real owner session (JWT)", () => {
  it("an owner creates, lists, uses and revokes keys; another owner sees none of them", async () => {
    const alice = await signUp("alice@example.com");
    const bob = await signUp("bob@example.com");
    const auth = (jwt: string) => ({ authorization: `Bearer ${jwt}` });

    const created = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: auth(alice),
      payload: { name: "robot arm 1" },
    });
    expect(created.statusCode).toBe(201);
    const { id, key } = created.json() as { id: string; key: string };
    expect(key).toMatch(/^vla_live_[1-9A-HJ-NP-Za-km-z]+$/);

    const list = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: auth(alice) });
    expect(list.statusCode).toBe(200);
    expect(JSON.stringify(list.json())).not.toContain(key);

    // The key authenticates as Alice's customer; its usage is visible with it.
    const usage = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(usage.statusCode).toBe(200);
    const me = await t.app.inject({ method: "GET", url: "/auth/me", headers: auth(alice) });
    expect(me.statusCode).toBe(200);
    expect(usage.json().customer_id).toBe(me.json().customer_id);
    expect(usage.json().tier).toBe("free");

    // Bob cannot see or touch Alice's key.
    const bobList = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: auth(bob) });
    expect(JSON.stringify(bobList.json())).not.toContain(id);
    const bobRevoke = await t.app.inject({ method: "DELETE", url: `/v1/api-keys/${id}`, headers: auth(bob) });
    expect(bobRevoke.statusCode).toBe(404);

    // An inference-scope key cannot manage keys.
    const byKey = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: { "x-api-key": key } });
    expect(byKey.statusCode).toBe(403);

    const revoke = await t.app.inject({ method: "DELETE", url: `/v1/api-keys/${id}`, headers: auth(alice) });
    expect(revoke.statusCode).toBe(200);
    const after = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(after.statusCode).toBe(401);
    expect(after.json().code).toBe("api_key_revoked");
  });

  it("a signed-out session can no longer manage keys", async () => {
    const carol = await signUp("carol@example.com");
    const out = await t.app.inject({
      method: "POST",
      url: "/auth/logout",
      headers: { authorization: `Bearer ${carol}` },
    });
    expect(out.statusCode).toBeLessThan(300);
    const res = await t.app.inject({
      method: "GET",
      url: "/v1/api-keys",
      headers: { authorization: `Bearer ${carol}` },
    });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe("invalid_token");
  });
});

describe("account deletion and API keys", () => {
  it("deleting the account removes its keys and they stop working at once", async () => {
    const dave = await signUp("dave@example.com");
    const created = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { authorization: `Bearer ${dave}` },
      payload: { name: "to be erased" },
    });
    const { key } = created.json() as { key: string };
    const customerId = (
      await t.app.inject({ method: "GET", url: "/auth/me", headers: { authorization: `Bearer ${dave}` } })
    ).json().customer_id as string;
    // Warm the key cache first, as a robot in use would.
    expect((await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } })).statusCode).toBe(
      200,
    );
    const del = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: { authorization: `Bearer ${dave}` },
      payload: { password: "a long and unusual passphrase" },
    });
    expect(del.statusCode).toBeLessThan(300);
    const after = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(after.statusCode).toBe(401);
    const rows = await t.database.db.execute(
      sql`select count(*)::int as n from api_keys where customer_id = ${customerId}`,
    );
    expect((rows as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);
  });
});
