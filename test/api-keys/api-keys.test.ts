import { Writable } from "node:stream";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiKeys, customers } from "../../src/platform/db/schema/index.ts";
import { isolatedDatabase } from "../helpers/app.ts";
import { buildLimitsApp, type LimitsContext, owner, seedCustomer, seedKey, xKey } from "../helpers/limits.ts";

let t: LimitsContext;
beforeAll(async () => {
  t = await buildLimitsApp({ env: { API_KEY_INVALID_ATTEMPTS_PER_MINUTE: "1000" } });
});
afterAll(async () => {
  await t.close();
});

type Res = { statusCode: number; headers: Record<string, unknown>; json: () => unknown; body: string };

function problem(res: Res, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  return body;
}

async function createKey(customerId: string, body: Record<string, unknown>) {
  const res = await t.app.inject({ method: "POST", url: "/v1/api-keys", headers: owner(customerId), payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as { id: string; key: string; status: string; display_prefix: string; scopes: string[] };
}

const probe = (headers: Record<string, string>, remoteAddress = "127.0.0.1") =>
  t.app.inject({ method: "GET", url: "/probe", headers, remoteAddress });

describe("key lifecycle", () => {
  it("creates, lists, uses, renames and revokes a key", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const created = await createKey(c, { name: "arm-1" });
    expect(created.key).toMatch(/^vla_live_[1-9A-HJ-NP-Za-km-z]{43,44}$/);
    expect(created.display_prefix).toBe(created.key.slice(0, 13));
    expect(created.scopes).toEqual(["inference"]);
    expect(created.status).toBe("active");

    const list = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: owner(c) });
    expect(list.statusCode).toBe(200);
    const data = (list.json() as { data: Record<string, unknown>[] }).data;
    expect(data).toHaveLength(1);
    expect(data[0]).toMatchObject({ id: created.id, name: "arm-1", status: "active", last_used_at: null });
    expect(Object.keys(data[0] ?? {}).sort()).toEqual(
      [
        "created_at",
        "display_prefix",
        "expires_at",
        "id",
        "last_used_at",
        "model",
        "name",
        "replaced_by",
        "revokes_at",
        "robot_id",
        "scopes",
        "status",
        "unnorm_key",
      ].sort(),
    );
    expect(list.body).not.toContain(created.key);

    expect((await probe(xKey(created.key))).statusCode).toBe(200);

    const renamed = await t.app.inject({
      method: "PATCH",
      url: `/v1/api-keys/${created.id}`,
      headers: owner(c),
      payload: { name: "  arm-1 spare " },
    });
    expect(renamed.statusCode).toBe(200);
    expect(renamed.json()).toMatchObject({ name: "arm-1 spare", status: "active" });

    const revoked = await t.app.inject({ method: "DELETE", url: `/v1/api-keys/${created.id}`, headers: owner(c) });
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json()).toMatchObject({ status: "revoked" });
    problem(await probe(xKey(created.key)), 401, "api_key_revoked");
    // Revoking twice is harmless.
    expect(
      (await t.app.inject({ method: "DELETE", url: `/v1/api-keys/${created.id}`, headers: owner(c) })).statusCode,
    ).toBe(200);
  });

  it("stores only the SHA-256 and the display prefix", async () => {
    const c = await seedCustomer(t.database);
    const created = await createKey(c, { name: "hash-check" });
    const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, created.id));
    expect(row?.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(created.key.slice(13));
    expect(row?.displayPrefix).toBe(created.key.slice(0, 13));
  });
});

describe("credential forms", () => {
  let key: string;
  beforeAll(async () => {
    const c = await seedCustomer(t.database, { tier: "enterprise" });
    key = (await seedKey(t.database, c)).key;
  });

  it("accepts X-API-Key, Authorization: Bearer and Authorization: Api-Key", async () => {
    expect((await probe({ "x-api-key": key })).statusCode).toBe(200);
    expect((await probe({ authorization: `Bearer ${key}` })).statusCode).toBe(200);
    expect((await probe({ authorization: `Api-Key ${key}` })).statusCode).toBe(200);
  });

  it("answers 401 with a precise code for each failure", async () => {
    problem(await probe({}), 401, "unauthorized");
    problem(await probe({ "x-api-key": "vla_live_short" }), 401, "malformed_api_key");
    problem(await probe({ authorization: "Api-Key not-a-key" }), 401, "malformed_api_key");
    problem(await probe({ authorization: `Bearer vla_live_${"2".repeat(44)}` }), 401, "invalid_api_key");
    problem(await probe({ authorization: `Basic ${key}` }), 401, "unauthorized");
    const res = await probe({ "x-api-key": `vla_test_${"3".repeat(44)}` });
    problem(res, 401, "invalid_api_key");
    expect(res.headers["www-authenticate"]).toContain("invalid_token");
  });
});

describe("scopes", () => {
  it("inference keys cannot manage keys; admin keys can; admin-only keys cannot run inference", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const inference = await seedKey(t.database, c, { scopes: ["inference"] });
    const admin = await seedKey(t.database, c, { scopes: ["admin"] });
    problem(await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: xKey(inference.key) }), 403, "forbidden");
    problem(
      await t.app.inject({ method: "POST", url: "/v1/api-keys", headers: xKey(inference.key), payload: { name: "x" } }),
      403,
      "forbidden",
    );
    const list = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: xKey(admin.key) });
    expect(list.statusCode).toBe(200);
    expect((list.json() as { data: unknown[] }).data).toHaveLength(2);
    const made = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: xKey(admin.key),
      payload: { name: "made by admin key", scopes: ["inference", "admin"] },
    });
    expect(made.statusCode).toBe(201);
    expect(made.json()).toMatchObject({ scopes: ["inference", "admin"] });
    problem(await probe(xKey(admin.key)), 403, "forbidden");
    expect((await probe(xKey(inference.key))).statusCode).toBe(200);
  });

  it("a scope change applies to the next request", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const k = await seedKey(t.database, c, { scopes: ["inference", "admin"] });
    expect((await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: xKey(k.key) })).statusCode).toBe(200);
    const res = await t.app.inject({
      method: "PATCH",
      url: `/v1/api-keys/${k.id}`,
      headers: owner(c),
      payload: { scopes: ["inference"] },
    });
    expect(res.json()).toMatchObject({ scopes: ["inference"] });
    problem(await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: xKey(k.key) }), 403, "forbidden");
    problem(
      await t.app.inject({ method: "PATCH", url: `/v1/api-keys/${k.id}`, headers: owner(c), payload: {} }),
      422,
      "validation_failed",
    );
  });
});

describe("expiry", () => {
  it("stops a key at expires_at and lists it as expired", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const expiresAt = new Date(t.clock.t + 3_600_000).toISOString();
    const created = await createKey(c, { name: "short-lived", expires_at: expiresAt });
    expect(created).toMatchObject({ expires_at: expiresAt });
    expect((await probe(xKey(created.key))).statusCode).toBe(200);
    t.clock.advance(3_600_000);
    problem(await probe(xKey(created.key)), 401, "api_key_expired");
    const list = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: owner(c) });
    expect((list.json() as { data: { status: string }[] }).data[0]?.status).toBe("expired");
  });

  it("refuses an expiry in the past", async () => {
    const c = await seedCustomer(t.database);
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: owner(c),
      payload: { name: "x", expires_at: new Date(t.clock.t - 1000).toISOString() },
    });
    const body = problem(res, 422, "validation_failed");
    expect(body.errors).toEqual([expect.objectContaining({ path: "/expires_at" })]);
  });
});

describe("rotation", () => {
  it("keeps the old key working for the grace period, then only the new one", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const old = await createKey(c, { name: "rotating", scopes: ["inference", "admin"] });
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/api-keys/${old.id}/rotate`,
      headers: owner(c),
      payload: { grace_seconds: 60 },
    });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json() as {
      api_key: { id: string; key: string; name: string; scopes: string[] };
      rotated: Record<string, unknown>;
    };
    expect(body.api_key).toMatchObject({ name: "rotating", scopes: ["inference", "admin"], status: "active" });
    expect(body.api_key.key).not.toBe(old.key);
    expect(body.rotated).toMatchObject({ id: old.id, status: "rotating", replaced_by: body.api_key.id });
    expect(body.rotated.revokes_at).toBe(new Date(t.clock.t + 60_000).toISOString());

    expect((await probe(xKey(old.key))).statusCode).toBe(200);
    expect((await probe(xKey(body.api_key.key))).statusCode).toBe(200);
    problem(
      await t.app.inject({
        method: "POST",
        url: `/v1/api-keys/${old.id}/rotate`,
        headers: owner(c),
        payload: { grace_seconds: 5 },
      }),
      409,
      "conflict",
    );
    t.clock.advance(59_999);
    expect((await probe(xKey(old.key))).statusCode).toBe(200);
    t.clock.advance(1);
    problem(await probe(xKey(old.key)), 401, "api_key_revoked");
    expect((await probe(xKey(body.api_key.key))).statusCode).toBe(200);
  });

  it("with grace 0 ends the old key at once", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const old = await createKey(c, { name: "now" });
    expect((await probe(xKey(old.key))).statusCode).toBe(200);
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/api-keys/${old.id}/rotate`,
      headers: owner(c),
      payload: { grace_seconds: 0 },
    });
    expect(res.statusCode).toBe(201);
    problem(await probe(xKey(old.key)), 401, "api_key_revoked");
  });
});

describe("tenant isolation", () => {
  it("another customer's key id is not found, and lists never mix", async () => {
    const a = await seedCustomer(t.database);
    const b = await seedCustomer(t.database);
    const keyA = await createKey(a, { name: "a's key" });
    const adminB = await seedKey(t.database, b, { scopes: ["admin"] });
    for (const headers of [owner(b), xKey(adminB.key)]) {
      problem(
        await t.app.inject({ method: "PATCH", url: `/v1/api-keys/${keyA.id}`, headers, payload: { name: "mine" } }),
        404,
        "not_found",
      );
      problem(await t.app.inject({ method: "DELETE", url: `/v1/api-keys/${keyA.id}`, headers }), 404, "not_found");
      problem(
        await t.app.inject({
          method: "POST",
          url: `/v1/api-keys/${keyA.id}/rotate`,
          headers,
          payload: { grace_seconds: 1 },
        }),
        404,
        "not_found",
      );
      const list = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers });
      expect(list.body).not.toContain(keyA.id);
    }
    expect((await probe(xKey(keyA.key))).statusCode).toBe(200);
  });
});

describe("bad input is problem+json", () => {
  let c: string;
  beforeAll(async () => {
    c = await seedCustomer(t.database);
  });
  const post = (payload: string | Record<string, unknown>) =>
    t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(c), "content-type": "application/json" },
      payload: typeof payload === "string" ? payload : JSON.stringify(payload),
    });

  it("malformed JSON", async () => {
    problem(await post('{"name": '), 400, "invalid_json");
  });

  it.each([
    ["wrong type", { name: { first: "x" } }, "/name"],
    ["huge name", { name: "x".repeat(10_000) }, "/name"],
    ["blank name", { name: "   " }, "/name"],
    ["missing name", {}, "/name"],
    ["unknown scope", { name: "x", scopes: ["root"] }, "/scopes/0"],
    ["duplicate scopes", { name: "x", scopes: ["inference", "inference"] }, "/scopes"],
    ["empty scopes", { name: "x", scopes: [] }, "/scopes"],
    ["bad date", { name: "x", expires_at: "tomorrow" }, "/expires_at"],
    ["impossible date", { name: "x", expires_at: "2027-13-45T00:00:00Z" }, "/expires_at"],
    ["unknown field", { name: "x", customer_id: "00000000-0000-0000-0000-000000000000" }, "/customer_id"],
  ])("%s", async (_label, payload, path) => {
    const body = problem(await post(payload), 422, "validation_failed");
    expect(body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path })]));
  });

  it("bad ids and rotate bodies", async () => {
    problem(
      await t.app.inject({ method: "DELETE", url: "/v1/api-keys/not-a-uuid", headers: owner(c) }),
      400,
      "invalid_request",
    );
    const k = await createKey(c, { name: "r" });
    for (const payload of [{}, { grace_seconds: -1 }, { grace_seconds: 604_801 }, { grace_seconds: "soon" }]) {
      problem(
        await t.app.inject({ method: "POST", url: `/v1/api-keys/${k.id}/rotate`, headers: owner(c), payload }),
        422,
        "validation_failed",
      );
    }
  });
});

describe("invalid-key throttle", () => {
  const bad = (n: number) => `vla_live_${String(n).repeat(44)}`;

  it("answers 429 rate_limited with Retry-After to bad keys after too many from one IP", async () => {
    const ctx = await buildLimitsApp({ env: { API_KEY_INVALID_ATTEMPTS_PER_MINUTE: "3" } });
    try {
      const c = await seedCustomer(ctx.database, { tier: "pro" });
      const good = await seedKey(ctx.database, c);
      const hit = (headers: Record<string, string>, ip: string) =>
        ctx.app.inject({ method: "GET", url: "/probe", headers, remoteAddress: ip });
      for (let i = 0; i < 3; i++) problem(await hit(xKey(bad(i + 2)), "10.0.0.1"), 401, "invalid_api_key");
      const limited = await hit(xKey(bad(9)), "10.0.0.1");
      problem(limited, 429, "rate_limited");
      expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
      // A malformed key, too, gets the 429 and not the reason.
      problem(await hit(xKey("vla_live_nope"), "10.0.0.1"), 429, "rate_limited");
      expect((await hit(xKey(good.key), "10.0.0.2")).statusCode).toBe(200);
    } finally {
      await ctx.close();
    }
  });

  it("serves valid keys from a throttled IP (a shared NAT), while its bad keys keep getting 429", async () => {
    const ctx = await buildLimitsApp({ env: { API_KEY_INVALID_ATTEMPTS_PER_MINUTE: "3" } });
    try {
      const c = await seedCustomer(ctx.database, { tier: "pro" });
      const good = await seedKey(ctx.database, c);
      const expired = await seedKey(ctx.database, c, { expiresAt: new Date(Date.UTC(2026, 0, 1)) });
      const nat = "10.0.0.7";
      const hit = (key: string) =>
        ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key), remoteAddress: nat });
      // One misconfigured robot retries its wrong key.
      for (let i = 0; i < 3; i++) problem(await hit(bad(2)), 401, "invalid_api_key");
      for (let i = 0; i < 5; i++) problem(await hit(bad(2)), 429, "rate_limited");
      // Its neighbours' valid key is verified and served, again and again.
      for (let i = 0; i < 5; i++) expect((await hit(good.key)).statusCode).toBe(200);
      // An expired key is a failure like any other while throttled: 429, not the reason.
      problem(await hit(expired.key), 429, "rate_limited");
      problem(await hit(bad(2)), 429, "rate_limited");
      expect((await hit(good.key)).statusCode).toBe(200);
    } finally {
      await ctx.close();
    }
  });

  it("is no oracle: a throttled IP gets its limit of distinct keys looked up per window, then 429 whatever the key", async () => {
    const ctx = await buildLimitsApp({ env: { API_KEY_INVALID_ATTEMPTS_PER_MINUTE: "3" } });
    try {
      const c = await seedCustomer(ctx.database, { tier: "pro" });
      const first = await seedKey(ctx.database, c);
      const unseen = await seedKey(ctx.database, c);
      const hit = (key: string, ip = "10.0.0.9") =>
        ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key), remoteAddress: ip });
      for (let i = 0; i < 3; i++) problem(await hit(bad(i + 2)), 401, "invalid_api_key");
      // Throttled: three distinct keys are still looked up (two guesses and one valid key)...
      problem(await hit(bad(5)), 429, "rate_limited");
      expect((await hit(first.key)).statusCode).toBe(200);
      problem(await hit(bad(6)), 429, "rate_limited");
      // ...and a fourth is not, even a valid one: a guesser learns nothing more this minute.
      problem(await hit(unseen.key), 429, "rate_limited");
      problem(await hit(bad(7)), 429, "rate_limited");
      // The keys already looked up keep their answers; other addresses are not affected.
      expect((await hit(first.key)).statusCode).toBe(200);
      expect((await hit(unseen.key, "10.0.0.10")).statusCode).toBe(200);
      // Now this instance holds that key as valid: no guess, served from the throttled address too
      // without asking the throttle (no lookup happens), while guesses there still get 429.
      expect((await hit(unseen.key)).statusCode).toBe(200);
      problem(await hit(bad(8)), 429, "rate_limited");
    } finally {
      await ctx.close();
    }
  });
});

describe("hot path and bookkeeping", () => {
  it("a warm key is served without the database; last_used_at is batched and flushed on shutdown", async () => {
    const isolated = await isolatedDatabase();
    const lines: string[] = [];
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    try {
      const c = await seedCustomer(isolated.database, { tier: "pro" });
      const { key, id } = await seedKey(isolated.database, c);
      const ctx = await buildLimitsApp({ database: isolated.database, env: { LOG_LEVEL: "info" } });
      // Capture logs of a second app sharing the database.
      const { buildApp } = await import("../../src/app.ts");
      const { testConfig } = await import("../helpers/app.ts");
      const { createRedis } = await import("../../src/platform/redis.ts");
      const logged = await buildApp(testConfig({ LOG_LEVEL: "debug" }), {
        database: isolated.database,
        redis: createRedis({ keyPrefix: "unused:", commandTimeoutMs: 100 }),
        migrate: false,
        now: ctx.clock.now,
        logStream,
        plugins: [(await import("../helpers/limits.ts")).probePlugin],
      });
      try {
        expect((await ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) })).statusCode).toBe(200);
        const [before] = await isolated.database.db.select().from(apiKeys).where(eq(apiKeys.id, id));
        expect(before?.lastUsedAt).toBeNull();
        for (const headers of [xKey(key), { authorization: `Bearer ${key}` }, xKey(`vla_live_${"4".repeat(44)}`)]) {
          await logged.inject({ method: "GET", url: "/probe", headers });
        }
      } finally {
        await logged.close();
      }
      await ctx.close();
      const [after] = await isolated.database.db.select().from(apiKeys).where(eq(apiKeys.id, id));
      expect(after?.lastUsedAt?.getTime()).toBe(Date.UTC(2026, 10, 26, 12, 0, 0));
      const all = lines.join("");
      expect(all.length).toBeGreaterThan(0);
      expect(all).not.toContain(key);
      expect(all).not.toContain(key.slice(13));
    } finally {
      await isolated.drop();
    }
  });

  it("keeps verifying warm keys when the database is gone", async () => {
    const isolated = await isolatedDatabase();
    try {
      const c = await seedCustomer(isolated.database, { tier: "pro" });
      const { key } = await seedKey(isolated.database, c);
      const ctx = await buildLimitsApp({ database: isolated.database });
      try {
        expect((await ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) })).statusCode).toBe(200);
        await isolated.database.close();
        const res = await ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });
        expect(res.statusCode, res.body).toBe(200);
        // An unknown key needs the database: 503, not a false 401.
        problem(
          await ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(`vla_live_${"5".repeat(44)}`) }),
          503,
          "database_unavailable",
        );
      } finally {
        await ctx.close();
      }
    } finally {
      await isolated.drop();
    }
  });
});

describe("last_used_at", () => {
  it("only moves forward", async () => {
    const { ApiKeysRepo } = await import("../../src/modules/api-keys/api-keys.repo.ts");
    const c = await seedCustomer(t.database);
    const { id } = await seedKey(t.database, c);
    const repo = new ApiKeysRepo(t.database.db);
    const later = new Date(Date.UTC(2026, 10, 26, 12, 5));
    await repo.touchLastUsed([id], later);
    await repo.touchLastUsed([id], new Date(Date.UTC(2026, 10, 26, 12, 1)));
    const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, id));
    expect(row?.lastUsedAt?.getTime()).toBe(later.getTime());
  });
});

describe("customer limit changes", () => {
  it("customerChanged() makes a new tier take effect on the next request", async () => {
    const c = await seedCustomer(t.database, { tier: "free" });
    const { key } = await seedKey(t.database, c);
    const first = await probe(xKey(key));
    expect(first.headers["ratelimit-policy"]).toContain('"minute";q=10;');
    await t.database.db.update(customers).set({ tier: "pro" }).where(eq(customers.id, c));
    await t.app.platform.limits.customerChanged(c);
    const second = await probe(xKey(key));
    expect(second.headers["ratelimit-policy"]).toContain('"minute";q=100;');
  });
});
