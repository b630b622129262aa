import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { usageCounters } from "../../src/platform/db/schema/index.ts";
import { isolatedDatabase } from "../helpers/app.ts";
import {
  buildLimitsApp,
  FakeClock,
  hasRedis,
  type LimitsContext,
  seedCustomer,
  seedKey,
  xKey,
} from "../helpers/limits.ts";

// Runs on the embedded in-process limiter, and on Redis when TEST_REDIS_URL is set.
let t: LimitsContext;
beforeAll(async () => {
  t = await buildLimitsApp();
});
afterAll(async () => {
  await t.close();
});

type Res = { statusCode: number; headers: Record<string, unknown>; json: () => unknown; body: string };
const probe = (key: string) => t.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });
const usage = async (key: string) => {
  const res = await t.app.inject({ method: "GET", url: "/v1/usage", headers: xKey(key) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Record<
    string,
    { used: number; limit: number | null; remaining: number | null; resets_at: string }
  > & {
    limiter: string;
    tier: string;
  };
};

async function customerWithKey(seed: Parameters<typeof seedCustomer>[1]) {
  const c = await seedCustomer(t.database, seed);
  return { customerId: c, key: (await seedKey(t.database, c)).key };
}

function expectQuotaExceeded(res: Res, violated: string[]) {
  expect(res.statusCode, res.body).toBe(429);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.type).toBe("https://iana.org/assignments/http-problem-types#quota-exceeded");
  expect(body.code).toBe("quota_exceeded");
  expect(body["violated-policies"]).toEqual(violated);
  expect(res.headers["retry-after"]).toMatch(/^\d+$/);
  expect(res.headers["ratelimit-policy"]).toBeDefined();
  expect(res.headers.ratelimit).toBeDefined();
  return body;
}

async function spend(key: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await probe(key);
    expect(res.statusCode, `request ${i + 1}: ${res.body}`).toBe(200);
  }
}

describe("minute window (GCRA)", () => {
  it("allows exactly the limit, then one more per emission interval", async () => {
    const { key } = await customerWithKey({ tier: "free" }); // 10/min -> one every 6 s
    await spend(key, 10);
    const rejected = await probe(key);
    expectQuotaExceeded(rejected, ["minute"]);
    expect(rejected.headers["retry-after"]).toBe("6");
    t.clock.advance(5_999);
    expectQuotaExceeded(await probe(key), ["minute"]);
    t.clock.advance(1);
    expect((await probe(key)).statusCode).toBe(200);
    expectQuotaExceeded(await probe(key), ["minute"]);
    t.clock.advance(60_000);
    await spend(key, 10);
    expectQuotaExceeded(await probe(key), ["minute"]);
  });
});

describe("day window (UTC calendar day)", () => {
  it("stops at the daily quota until the next UTC midnight", async () => {
    const clock = t.clock;
    const { key } = await customerWithKey({ tier: "enterprise", perDay: 5 });
    await spend(key, 5);
    const rejected = await probe(key);
    expectQuotaExceeded(rejected, ["day"]);
    const dayStart = Date.UTC(
      new Date(clock.t).getUTCFullYear(),
      new Date(clock.t).getUTCMonth(),
      new Date(clock.t).getUTCDate() + 1,
    );
    expect(Number(rejected.headers["retry-after"])).toBe(Math.ceil((dayStart - clock.t) / 1000));
    clock.t = dayStart - 1;
    expectQuotaExceeded(await probe(key), ["day"]);
    clock.t = dayStart;
    await spend(key, 5);
    expectQuotaExceeded(await probe(key), ["day"]);
  });
});

describe("month window (UTC calendar month)", () => {
  it("stops at the monthly quota until the first of the next month", async () => {
    const ctx = await buildLimitsApp({ clock: new FakeClock(Date.UTC(2026, 10, 30, 23, 0, 0)) });
    try {
      const c = await seedCustomer(ctx.database, { tier: "pro", perMonth: 3 });
      const { key } = await seedKey(ctx.database, c);
      const hit = () => ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });
      for (let i = 0; i < 3; i++) expect((await hit()).statusCode).toBe(200);
      const rejected = await hit();
      expectQuotaExceeded(rejected, ["month"]);
      expect(rejected.headers["retry-after"]).toBe("3600");
      ctx.clock.t = Date.UTC(2026, 11, 1) - 1;
      expectQuotaExceeded(await hit(), ["month"]);
      ctx.clock.t = Date.UTC(2026, 11, 1);
      expect((await hit()).statusCode).toBe(200);
    } finally {
      await ctx.close();
    }
  });
});

describe("atomicity", () => {
  it("a request rejected by one window spends nothing in the others", async () => {
    const { key } = await customerWithKey({ tier: "pro", perMinute: 5, perMonth: 3 });
    await spend(key, 3);
    for (let i = 0; i < 6; i++) {
      const res = await probe(key);
      expectQuotaExceeded(res, ["month"]);
      expect(res.headers.ratelimit).toMatch(/^"minute";r=2;t=\d+, "day";r=9997;t=\d+, "month";r=0;t=\d+$/);
    }
    const u = await usage(key);
    expect(u.minute).toMatchObject({ used: 3, limit: 5, remaining: 2 });
    expect(u.day).toMatchObject({ used: 3, remaining: 9997 });
    expect(u.month).toMatchObject({ used: 3, limit: 3, remaining: 0 });
  });

  it("reports every violated policy", async () => {
    const { key } = await customerWithKey({ tier: "pro", perMinute: 2, perDay: 2, perMonth: 2 });
    await spend(key, 2);
    expectQuotaExceeded(await probe(key), ["minute", "day", "month"]);
  });

  it("401 and 403 responses do not count", async () => {
    const c = await seedCustomer(t.database, { tier: "free", perMinute: 2 });
    const adminOnly = await seedKey(t.database, c, { scopes: ["admin"] });
    const inference = await seedKey(t.database, c);
    for (let i = 0; i < 5; i++) {
      expect((await probe(adminOnly.key)).statusCode).toBe(403);
      expect((await probe(`vla_live_${"7".repeat(44)}`)).statusCode).toBe(401);
    }
    // Bad input on a metered route is rejected by validation before the meter.
    const bad = await t.app.inject({
      method: "POST",
      url: "/probe",
      headers: xKey(inference.key),
      payload: { n: "x" },
    });
    expect(bad.statusCode).toBe(422);
    await spend(inference.key, 2);
    expectQuotaExceeded(await probe(inference.key), ["minute"]);
  });
});

describe("limits belong to the customer", () => {
  it("all keys of a customer share them; other customers are unaffected", async () => {
    const c = await seedCustomer(t.database, { tier: "free" });
    const k1 = await seedKey(t.database, c);
    const k2 = await seedKey(t.database, c);
    const other = await customerWithKey({ tier: "free" });
    await spend(k1.key, 5);
    await spend(k2.key, 5);
    expectQuotaExceeded(await probe(k1.key), ["minute"]);
    expectQuotaExceeded(await probe(k2.key), ["minute"]);
    expect((await probe(other.key)).statusCode).toBe(200);
  });
});

describe("headers", () => {
  it("carry draft-11 RateLimit-Policy and RateLimit with exact syntax", async () => {
    const { key } = await customerWithKey({ tier: "free" });
    t.clock.t = Date.UTC(2026, 10, 28, 18, 0, 0); // 6 h to the next UTC day, 2 d 6 h to December
    const res = await probe(key);
    expect(res.statusCode).toBe(200);
    expect(res.headers["ratelimit-policy"]).toBe('"minute";q=10;w=60, "day";q=1000;w=86400, "month";q=10000;w=2592000');
    expect(res.headers.ratelimit).toBe('"minute";r=9;t=6, "day";r=999;t=21600, "month";r=9999;t=194400');
    // Every item parses as an RFC 9651 list member: sf-string with integer parameters.
    const item = /^"(minute|day|month)"(;[a-z]+=\d+)+$/;
    for (const field of [res.headers["ratelimit-policy"], res.headers.ratelimit] as string[]) {
      for (const member of field.split(", ")) expect(member).toMatch(item);
    }
  });

  it("leave unlimited windows out", async () => {
    const { key } = await customerWithKey({ tier: "enterprise" });
    const res = await probe(key);
    expect(res.headers["ratelimit-policy"]).toBe('"minute";q=1000;w=60, "day";q=100000;w=86400');
    expect(res.headers.ratelimit).toMatch(/^"minute";r=999;t=1, "day";r=99999;t=\d+$/);
  });

  it("are not sent on 401/403", async () => {
    const res = await probe(`vla_live_${"8".repeat(44)}`);
    expect(res.statusCode).toBe(401);
    expect(res.headers.ratelimit).toBeUndefined();
  });
});

describe("GET /v1/usage", () => {
  it("reports usage, limits and reset times without consuming", async () => {
    const { customerId, key } = await customerWithKey({ tier: "free" });
    await spend(key, 3);
    const u1 = await usage(key);
    const u2 = await usage(key);
    expect(u2).toEqual(u1);
    expect(u1).toMatchObject({ customer_id: customerId, tier: "free" });
    expect(u1.minute).toMatchObject({ used: 3, limit: 10, remaining: 7 });
    expect(u1.day).toMatchObject({ used: 3, limit: 1000, remaining: 997 });
    expect(u1.month).toMatchObject({ used: 3, limit: 10000, remaining: 9997 });
    expect(new Date(u1.minute?.resets_at as string).getTime()).toBe(t.clock.t + 18_000);
    expect(u1.limiter).toBe(hasRedis ? "redis" : "memory");
    const unauth = await t.app.inject({ method: "GET", url: "/v1/usage" });
    expect(unauth.statusCode).toBe(401);
  });
});

describe("durable monthly usage", () => {
  it("is written in batches and seeds the month on a fresh limiter", async () => {
    const isolated = await isolatedDatabase();
    try {
      const c = await seedCustomer(isolated.database, { tier: "pro", perMonth: 10 });
      const { key } = await seedKey(isolated.database, c);
      const first = await buildLimitsApp({ database: isolated.database });
      const hit = (ctx: LimitsContext) => ctx.app.inject({ method: "GET", url: "/probe", headers: xKey(key) });
      for (let i = 0; i < 4; i++) expect((await hit(first)).statusCode).toBe(200);
      const before = await isolated.database.db.select().from(usageCounters).where(eq(usageCounters.customerId, c));
      expect(before).toEqual([]); // not per request
      await first.close(); // flushes
      const rows = await isolated.database.db.select().from(usageCounters).where(eq(usageCounters.customerId, c));
      expect(rows).toMatchObject([{ month: "2026-11-01", requests: 4 }]);

      // A new instance with its own (cold) Redis key space and in-process limiter starts from 4.
      const second = await buildLimitsApp({ database: isolated.database });
      try {
        for (let i = 0; i < 6; i++) expect((await hit(second)).statusCode).toBe(200);
        expectQuotaExceeded(await hit(second), ["month"]);
      } finally {
        await second.close();
      }
    } finally {
      await isolated.drop();
    }
  });
});
