import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { billingContexts } from "../../src/modules/billing/billing.module.ts";
import { overageParts } from "../../src/modules/billing/overage.module.ts";
import { calendar } from "../../src/modules/rate-limit/calendar.ts";
import { billingMeterReports, customers, usageCounters } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, signUp } from "../auth/helpers.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { probePlugin } from "../helpers/limits.ts";
import { type BillingTestContext, billingEnv, buildBillingApp } from "./helpers.ts";

const REQ = "vla_overage_requests";
const STREAM = "vla_overage_stream_seconds";

let t: BillingTestContext;
beforeAll(async () => {
  t = await buildBillingApp({ plugins: [probePlugin] });
});
afterAll(async () => {
  await t?.close();
});

/** A signed-up customer made Pro with a Stripe customer in the fake (as checkout + webhook would leave it). */
async function proCustomer(
  ctx: TestContext & { fake: BillingTestContext["fake"] },
  overrides: Partial<typeof customers.$inferInsert> = {},
) {
  const s = await signUp(ctx, "pro");
  const cus = ctx.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
  await ctx.database.db
    .update(customers)
    .set({ tier: "pro", stripeCustomerId: cus.id as string, subscriptionStatus: "active", ...overrides })
    .where(eq(customers.id, s.customerId));
  await ctx.app.platform.limits.customerChanged(s.customerId);
  return { ...s, stripeId: cus.id as string };
}

function settings(ctx: TestContext, token: string, payload?: Record<string, unknown>) {
  return ctx.app.inject({
    method: payload === undefined ? "GET" : "PATCH",
    url: "/v1/billing/settings",
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload }),
  });
}

/** Sets the durable month usage (what the limiter's batches would have flushed). */
async function setUsage(ctx: TestContext, customerId: string, requests: number, streamMs = 0, month?: string) {
  await ctx.database.db
    .insert(usageCounters)
    .values({ customerId, month: month ?? calendar(Date.now()).month, requests, streamMs })
    .onConflictDoUpdate({
      target: [usageCounters.customerId, usageCounters.month],
      set: { requests, streamMs },
    });
}

async function reportRow(ctx: TestContext, customerId: string, meter: string, period?: string) {
  const rows = await ctx.database.db
    .select()
    .from(billingMeterReports)
    .where(
      and(
        eq(billingMeterReports.customerId, customerId),
        eq(billingMeterReports.meter, meter),
        eq(billingMeterReports.period, period ?? calendar(Date.now()).month),
      ),
    );
  return rows[0];
}

async function metric(ctx: TestContext, name: string): Promise<string> {
  return ctx.app.platform.metrics.registry.getSingleMetricAsString(name);
}

describe("GET/PATCH /v1/billing/settings", () => {
  it("answers 503 billing_disabled without Stripe", async () => {
    const plain = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
    try {
      const s = await signUp(plain, "nobill");
      expectProblem(await settings(plain, s.access), 503, "billing_disabled");
      expectProblem(await settings(plain, s.access, { overage: false }), 503, "billing_disabled");
    } finally {
      await plain.close();
    }
  });

  it("refuses overage to free, enterprise and an unsubscribed Pro, and needs a cap", async () => {
    const free = await signUp(t, "free");
    const body = expectProblem(
      await settings(t, free.access, { overage: true, monthly_overage_cap: 10 }),
      409,
      "overage_not_available",
    );
    expect(body.detail).toContain("pro");
    const view = await settings(t, free.access);
    expect(view.statusCode, view.body).toBe(200);
    expect(view.json()).toMatchObject({ overage: false, overage_available: false, included: { requests: 10_000 } });

    const ent = await proCustomer(t, { tier: "enterprise" });
    expectProblem(
      await settings(t, ent.access, { overage: true, monthly_overage_cap: 10 }),
      409,
      "overage_not_available",
    );
    const unsubscribed = await signUp(t, "nosub");
    await t.database.db.update(customers).set({ tier: "pro" }).where(eq(customers.id, unsubscribed.customerId));
    expectProblem(
      await settings(t, unsubscribed.access, { overage: true, monthly_overage_cap: 10 }),
      409,
      "overage_not_available",
    );

    const pro = await proCustomer(t);
    const noCap = expectProblem(await settings(t, pro.access, { overage: true }), 422, "validation_failed");
    expect(JSON.stringify(noCap.errors)).toContain("/monthly_overage_cap");
    const tooBig = await settings(t, pro.access, { overage: true, monthly_overage_cap: 10_000_001 });
    expect(tooBig.statusCode).toBeGreaterThanOrEqual(400);
    expect(tooBig.statusCode).toBeLessThan(500);
    const row = await t.database.db.select().from(customers).where(eq(customers.id, pro.customerId));
    expect(row[0]?.overageEnabled).toBe(false);
  });

  it("turns overage on for Pro, stores the caps, and keeps them when it is turned off", async () => {
    const pro = await proCustomer(t);
    const on = await settings(t, pro.access, {
      overage: true,
      monthly_overage_cap: 5_000,
      stream_overage_cap_seconds: 600,
    });
    expect(on.statusCode, on.body).toBe(200);
    expect(on.json()).toEqual({
      overage: true,
      monthly_overage_cap: 5_000,
      stream_overage_cap_seconds: 600,
      overage_available: true,
      included: { requests: 100_000, stream_seconds: 720_000 },
    });
    const row = (await t.database.db.select().from(customers).where(eq(customers.id, pro.customerId)))[0];
    expect(row).toMatchObject({ overageEnabled: true, overageCapRequests: 5_000, overageCapStreamSeconds: 600 });
    // The period is marked as one with overage for the reporter.
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 0, pendingTo: null });
    const off = await settings(t, pro.access, { overage: false });
    expect(off.json()).toMatchObject({ overage: false, monthly_overage_cap: 5_000 });
    expect((await settings(t, pro.access)).json()).toMatchObject({ overage: false, stream_overage_cap_seconds: 600 });
  });
});

describe("the limiter with overage on", () => {
  it("serves past the included quota up to the cap, with Billing-Overage, then 429", async () => {
    const pro = await proCustomer(t, { quotaPerMonth: 3 });
    const keyRes = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: bearer(pro.access),
      payload: { name: "robot", scopes: ["inference"] },
    });
    expect(keyRes.statusCode, keyRes.body).toBe(201);
    const key = keyRes.json().key as string;
    const probe = () => t.app.inject({ method: "GET", url: "/probe", headers: { "x-api-key": key } });
    for (let i = 1; i <= 3; i++) {
      const r = await probe();
      expect(r.statusCode, r.body).toBe(200);
      expect(r.headers["billing-overage"]).toBeUndefined();
    }
    // Without overage the 4th is refused.
    expectProblem(await probe(), 429, "quota_exceeded");

    expect((await settings(t, pro.access, { overage: true, monthly_overage_cap: 2 })).statusCode).toBe(200);
    const fourth = await probe();
    expect(fourth.statusCode, fourth.body).toBe(200);
    expect(fourth.headers["ratelimit-policy"]).toContain('"month";q=5;');
    expect(fourth.headers["billing-overage"]).toBe("requests=1;cap=2");
    const fifth = await probe();
    expect(fifth.statusCode).toBe(200);
    expect(fifth.headers["billing-overage"]).toBe("requests=2;cap=2");
    const sixth = expectProblem(await probe(), 429, "quota_exceeded");
    expect(sixth["violated-policies"]).toEqual(["month"]);

    // /v1/usage shows it too.
    const usage = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(usage.headers["billing-overage"]).toBe("requests=2;cap=2");
    expect(usage.json().month).toMatchObject({ used: 5, limit: 5 });

    // Off again: back to the included quota at once.
    await settings(t, pro.access, { overage: false });
    const after = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(after.json().month).toMatchObject({ limit: 3, remaining: 0 });
    expect(after.headers["billing-overage"]).toBeUndefined();
  });
});

describe("overage reporting to Stripe Billing Meters", () => {
  const reporter = (ctx: TestContext) => {
    const r = overageParts.get(ctx.app.platform)?.reporter;
    if (r === undefined || r === null) throw new Error("no overage reporter");
    return r;
  };

  it("reports requests and stream seconds exactly once across crashes, outages and a restart", async () => {
    const pro = await proCustomer(t, { quotaPerMonth: 100, streamSecondsPerMonth: 10 });
    await settings(t, pro.access, { overage: true, monthly_overage_cap: 1_000, stream_overage_cap_seconds: 50 });
    const total = () => t.fake.state.meterTotal(pro.stripeId, REQ);

    await setUsage(t, pro.customerId, 130, 25_500);
    await t.runJobs();
    expect(total()).toBe(30);
    expect(t.fake.state.meterTotal(pro.stripeId, STREAM)).toBe(15);
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 30, pendingTo: null });
    const event = [...t.fake.state.meterEvents.values()].find((e) => e.stripeCustomerId === pro.stripeId);
    expect(event?.identifier).toBe(`${pro.customerId}:${calendar(Date.now()).month}:requests:0-30`);

    // A crash after Stripe accepted the event, before the acknowledgement.
    await setUsage(t, pro.customerId, 180, 25_500);
    reporter(t).beforeAck = () => {
      throw new Error("simulated crash before the acknowledgement");
    };
    await t.runJobs();
    reporter(t).beforeAck = undefined;
    expect(total()).toBe(80);
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 30, pendingTo: 80 });
    // Usage keeps growing; the pending range is resent first (same identifier: not counted again).
    await setUsage(t, pro.customerId, 200, 25_500);
    const posts = t.fake.requestsTo("/v1/billing/meter_events", "POST").length;
    await t.runJobs();
    const sent = t.fake.requestsTo("/v1/billing/meter_events", "POST");
    expect(sent).toHaveLength(posts + 1);
    expect(sent.at(-1)?.body.identifier).toBe(`${pro.customerId}:${calendar(Date.now()).month}:requests:30-80`);
    expect(total()).toBe(80);
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 80, pendingTo: null });
    await t.runJobs();
    expect(total()).toBe(100);

    // Stripe processes the event but the answer is lost (socket destroyed after processing), and
    // so is the answer to the HTTP client's own retry of the connection.
    await setUsage(t, pro.customerId, 250, 25_500);
    t.fake.failNext(2, { afterProcessing: true, pathPrefix: "/v1/billing/meter_events" });
    await t.runJobs();
    expect(total()).toBe(150);
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 100, pendingTo: 150 });
    await t.runJobs();
    expect(total()).toBe(150);
    expect(await reportRow(t, pro.customerId, "requests")).toMatchObject({ reported: 150, pendingTo: null });

    // Stripe down: stays pending, counted, then catches up.
    await setUsage(t, pro.customerId, 300, 100_000);
    t.fake.setDown(true);
    await t.runJobs();
    t.fake.setDown(false);
    expect(total()).toBe(150);
    expect(await metric(t, "vla_billing_overage_report_failures_total")).toMatch(/meter="requests"} [1-9]/);
    expect(await metric(t, "vla_billing_overage_pending_reports")).toMatch(/ 1$/m);
    await t.runJobs();
    await t.runJobs();
    expect(total()).toBe(200);
    // Stream: 100 s used, 10 included, capped at 50.
    expect(t.fake.state.meterTotal(pro.stripeId, STREAM)).toBe(50);

    // A restart mid-way: instance 1 sends and dies before acknowledging; instance 2 (same database) finishes.
    await setUsage(t, pro.customerId, 400, 100_000);
    const one = await buildTestApp({ database: t.database, env: billingEnv(t.fake) });
    reporter(one).beforeAck = () => {
      throw new Error("instance 1 dies");
    };
    await billingContexts.get(one.app.platform)?.jobs.runOnce();
    await one.close();
    expect(total()).toBe(300);
    const two = await buildTestApp({ database: t.database, env: billingEnv(t.fake) });
    try {
      const run = () => billingContexts.get(two.app.platform)?.jobs.runOnce();
      await run();
      expect(total()).toBe(300);
      await setUsage(t, pro.customerId, 420, 100_000);
      await run();
      expect(total()).toBe(320);
    } finally {
      await two.close();
    }
    // Past the cap nothing more is reported.
    await setUsage(t, pro.customerId, 5_000, 100_000);
    await t.runJobs();
    await t.runJobs();
    expect(total()).toBe(1_000);
  });

  it("never drops or doubles a unit over many ticks of growing usage with random faults", async () => {
    const pro = await proCustomer(t, { quotaPerMonth: 10 });
    await settings(t, pro.access, { overage: true, monthly_overage_cap: 100_000 });
    let seed = 20261217;
    const rnd = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    let used = 0;
    for (let tick = 0; tick < 25; tick++) {
      used += rnd(40);
      await setUsage(t, pro.customerId, used);
      const fault = rnd(4);
      if (fault === 1) {
        reporter(t).beforeAck = () => {
          throw new Error("crash");
        };
      } else if (fault === 2) t.fake.failNext(2, { afterProcessing: true, pathPrefix: "/v1/billing/meter_events" });
      else if (fault === 3) t.fake.setDown(true);
      await t.runJobs();
      reporter(t).beforeAck = undefined;
      t.fake.setDown(false);
      // Never more than the true overage, whatever happened.
      expect(t.fake.state.meterTotal(pro.stripeId, REQ)).toBeLessThanOrEqual(Math.max(0, used - 10));
    }
    for (let i = 0; i < 4; i++) await t.runJobs();
    expect(t.fake.state.meterTotal(pro.stripeId, REQ)).toBe(Math.max(0, used - 10));
    const row = await reportRow(t, pro.customerId, "requests");
    expect(row).toMatchObject({ reported: Math.max(0, used - 10), pendingTo: null });
  });

  it("skips customers without overage, and reports the previous month for an hour after it ends", async () => {
    const clock = { t: Date.UTC(2026, 11, 31, 23, 0, 0) };
    const ctx = await buildBillingApp({ now: () => clock.t, fakeNow: () => Math.floor(clock.t / 1000) });
    try {
      const off = await proCustomer(ctx, { quotaPerMonth: 10, overageCapRequests: 50 });
      await setUsage(ctx, off.customerId, 40, 0, "2026-12-01");
      const pro = await proCustomer(ctx, { quotaPerMonth: 10 });
      expect((await settings(ctx, pro.access, { overage: true, monthly_overage_cap: 500 })).statusCode).toBe(200);
      await setUsage(ctx, pro.customerId, 40, 0, "2026-12-01");
      await ctx.runJobs();
      expect(ctx.fake.state.meterTotal(pro.stripeId, REQ)).toBe(30);
      // Late batches of December land after midnight; still reported within the hour, dated in December.
      clock.t = Date.UTC(2027, 0, 1, 0, 30);
      await setUsage(ctx, pro.customerId, 55, 0, "2026-12-01");
      await ctx.runJobs();
      expect(ctx.fake.state.meterTotal(pro.stripeId, REQ)).toBe(45);
      const last = [...ctx.fake.state.meterEvents.values()].at(-1);
      expect(last?.timestamp).toBe(Date.UTC(2027, 0, 1) / 1000 - 1);
      clock.t = Date.UTC(2027, 0, 1, 2, 0);
      await setUsage(ctx, pro.customerId, 70, 0, "2026-12-01");
      await ctx.runJobs();
      expect(ctx.fake.state.meterTotal(pro.stripeId, REQ)).toBe(45);
      expect(ctx.fake.state.meterTotal(off.stripeId, REQ)).toBe(0);
      const rows = await ctx.database.db
        .select({ n: sql<number>`count(*)::int` })
        .from(billingMeterReports)
        .where(eq(billingMeterReports.customerId, off.customerId));
      expect(Number(rows[0]?.n)).toBe(0);
    } finally {
      await ctx.close();
    }
  });
});
