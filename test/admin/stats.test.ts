import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeSketch, Sketch } from "../../src/modules/analytics/sketch.ts";
import { billingReconcile } from "../../src/modules/billing/reconcile.ts";
import { bearer, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { type BillingTestContext, buildBillingApp } from "../billing/helpers.ts";
import { deliverOk, type Subscribed, subEvent, subscribe } from "../billing/webhook-helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import { FAKE_PRICE_ENTERPRISE, signedEvent } from "../helpers/stripe-fake.ts";

const DAY = 86_400_000;
const NOW = Date.parse("2026-12-15T12:30:00Z");
let nowMs = NOW;
let t: BillingTestContext;
let root: Session;
let plain: Session;

beforeAll(async () => {
  t = await buildBillingApp({ now: () => nowMs, fakeNow: () => Math.floor(nowMs / 1000) });
  root = await signUpSuperuser(t);
  plain = await signUp(t, "plain");
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string, access = root.access) => t.app.inject({ method: "GET", url, headers: bearer(access) });

describe("operators only", () => {
  it("every route: 401 without credentials, 403 for an owner and for an admin-scope key", async () => {
    await expectSuperuserOnly(
      t,
      plain,
      [
        "/admin/stats",
        "/admin/stats/revenue",
        "/admin/safety/incidents",
        "/admin/safety/stops",
        "/admin/monitoring/health",
      ].map((url) => ({ method: "GET" as const, url })),
    );
  });
});

describe("GET /admin/stats", () => {
  const sketchOf = (...ms: number[]) => {
    const s = new Sketch();
    for (const v of ms) s.add(v);
    return encodeSketch(s);
  };

  beforeAll(async () => {
    const db = t.database.db;
    const a = plain.customerId;
    const b = root.customerId;
    const today = new Date(Math.floor(NOW / DAY) * DAY);
    const hour = (h: number) => new Date(today.getTime() + h * 3_600_000);
    const nil = "00000000-0000-0000-0000-000000000000";
    await db.execute(sql`update customers set created_at = ${new Date(NOW - 3 * DAY)} where id = ${a}`);
    await db.execute(sql`update customers set created_at = ${new Date(NOW - 10 * DAY)} where id = ${b}`);
    // Hourly rollups: today (counted in today's numbers), and yesterday evening (last 24 h, not today).
    for (const [customer, at, requests, errors, lat] of [
      [a, hour(1), 100, 5, sketchOf(10, 20, 30)],
      [b, hour(11), 50, 0, sketchOf(40, 50)],
      [a, hour(-2), 70, 7, sketchOf(1000)],
    ] as const) {
      await db.execute(sql`insert into usage_hourly_metrics (customer_id, hour, model, source, api_key_id, requests, errors, latency_total)
        values (${customer}, ${at}, 'm', 'rest', ${nil}, ${requests}, ${errors}, ${lat})`);
    }
    // Daily rollups: this month (2026-12-01 .. 15) and last month (active 30 d, not this month).
    for (const [customer, day, requests, errors] of [
      [a, "2026-12-02", 1000, 10],
      [b, "2026-12-15", 150, 0],
      [a, "2026-11-20", 500, 50],
    ] as const) {
      await db.execute(sql`insert into robot_performance_metrics (customer_id, day, robot_id, model, requests, errors)
        values (${customer}, ${day}, '', 'm', ${requests}, ${errors})`);
    }
    await db.execute(sql`insert into usage_counters (customer_id, month, requests) values
      (${a}, '2026-12-01', 1100), (${b}, '2026-12-01', 150), (${b}, '2026-11-01', 99999)`);
    await db.execute(sql`insert into safety_incidents (customer_id, robot_id, violation_type, severity, action_taken, at) values
      (${a}, 'r1', 'workspace', 'high', 'clamped', ${hour(3)}),
      (${b}, 'r2', 'workspace', 'critical', 'emergency_stop', ${hour(4)}),
      (${b}, 'r2', 'workspace', 'critical', 'emergency_stop', ${hour(-1)})`);
    await db.execute(sql`insert into analytics_watermarks (name, xid, row_id, row_at, updated_at)
      values ('inference_logs', 1, ${nil}, ${hour(12)}, ${hour(12)})
      on conflict (name) do update set row_at = excluded.row_at, updated_at = excluded.updated_at`);
  });

  it("counts from the rollups, the usage counters and the incidents, with the watermark", async () => {
    const res = await get("/admin/stats");
    expect(res.statusCode, res.body).toBe(200);
    const s = res.json();
    expect(s.generated_at).toBe(new Date(NOW).toISOString());
    expect(s.rollups.watermark_at).toBe("2026-12-15T12:00:00.000Z");
    expect(s.users).toBeGreaterThanOrEqual(2);
    expect(s.customers.total).toBe(s.customers.by_tier.free + s.customers.by_tier.pro + s.customers.by_tier.enterprise);
    expect(s.customers.new_7d).toBe(1);
    expect(s.customers.new_30d).toBe(2);
    expect(s.customers.active_24h).toBe(2);
    expect(s.customers.active_30d).toBe(2);
    expect(s.requests.today).toMatchObject({ requests: 150, errors: 5 });
    expect(s.requests.today.error_rate).toBeCloseTo(5 / 150, 5);
    expect(s.requests.month).toMatchObject({ requests: 1150, errors: 10 });
    // Today's latencies are 10..50 ms: yesterday's 1000 ms is not in them.
    expect(s.latency_today_ms.p50).toBeGreaterThan(25);
    expect(s.latency_today_ms.p50).toBeLessThan(35);
    expect(s.latency_today_ms.p99).toBeLessThan(60);
    expect(s.top_customers.map((c: { customer_id: string }) => c.customer_id)).toEqual([
      plain.customerId,
      root.customerId,
    ]);
    expect(s.top_customers[0]).toMatchObject({ requests_month: 1100, email: plain.email });
    expect(s.incidents_today).toEqual({ total: 2, by_severity: { low: 0, medium: 0, high: 1, critical: 1 } });
  });

  it("audits the read with the customers it showed (admin_stats.read)", async () => {
    const rows = await t.database.db.execute(
      sql`select actor_user_id::text as actor, details from audit_log where action = 'admin_stats.read'`,
    );
    const last = (rows as unknown as { rows: { actor: string; details: Record<string, unknown> }[] }).rows.at(-1);
    expect(last?.actor).toBe(root.userId);
    expect(last?.details).toMatchObject({ superuser: true, top_customers: [plain.customerId, root.customerId] });
  });

  it("limit caps the top customers", async () => {
    const res = await get("/admin/stats?limit=1");
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().top_customers).toHaveLength(1);
  });

  it("bad input: limit out of range or not a number, unknown parameter -> 400 invalid_request", async () => {
    for (const q of ["limit=0", "limit=101", "limit=abc", "limit=1.5", "top=3"]) {
      expectProblem(await get(`/admin/stats?${q}`), 400, "invalid_request");
    }
  });
});

describe("GET /admin/stats/revenue", () => {
  let a: Subscribed;
  let b: Subscribed;
  let c: Subscribed;
  let old: Subscribed;

  const update = async (sub: Subscribed, patch: Record<string, unknown>) => {
    t.fake.state.updateSubscription(sub.subId, patch as never);
    await deliverOk(t, subEvent(t.fake, "customer.subscription.updated", sub.subId));
  };

  beforeAll(async () => {
    // Subscribed 40 days ago: in the MRR, outside the 30-day movement.
    nowMs = NOW - 40 * DAY;
    old = await subscribe(t, "rev-old");
    nowMs = NOW - 5 * DAY;
    a = await subscribe(t, "rev-a"); // pro 29.00 / month
    b = await subscribe(t, "rev-b", "enterprise"); // 499.00 / month
    c = await subscribe(t, "rev-c"); // pro, then 3 seats
    nowMs = NOW - DAY;
    const items = t.fake.state.subscriptions.get(c.subId)?.items as { data: { quantity: number }[] } | undefined;
    const first = items?.data[0];
    if (first === undefined) throw new Error("no item");
    first.quantity = 3;
    await update(c, {});
    await update(b, { status: "past_due" });
    await update(a, { status: "canceled" });
    nowMs = NOW;
  });

  it("MRR per currency and tier, ARR, past due and the 30-day movement from the recorded changes", async () => {
    const res = await get("/admin/stats/revenue");
    expect(res.statusCode, res.body).toBe(200);
    const r = res.json();
    expect(r.unpriced_subscriptions).toBe(0);
    expect(r.currencies).toHaveLength(1);
    const usd = r.currencies[0];
    expect(usd.currency).toBe("usd");
    expect(usd.mrr).toBe(49_900 + 3 * 2_900 + 2_900);
    expect(usd.arr).toBe(usd.mrr * 12);
    expect(usd.subscriptions).toBe(3);
    expect(usd.by_tier).toEqual({
      pro: { mrr: 4 * 2_900, subscriptions: 2 },
      enterprise: { mrr: 49_900, subscriptions: 1 },
    });
    expect(usd.past_due).toEqual({ mrr: 49_900, subscriptions: 1 });
    expect(usd.movement_30d).toEqual({
      new: 2_900 + 49_900 + 2_900,
      expansion: 2 * 2_900,
      contraction: 0,
      churned: 2_900,
      net: 2_900 + 49_900 + 2_900 + 2 * 2_900 - 2_900,
    });
    expect(old.customerId).toBeDefined();
    // The admin list's per-customer MRR is the same computation (quantity included): they add up.
    const list = await get("/admin/customers?sort=mrr&limit=100");
    expect(list.statusCode, list.body).toBe(200);
    const rows = list.json().data as { id: string; mrr: number }[];
    expect(rows.find((x) => x.id === c.customerId)?.mrr).toBe(3 * 2_900);
    expect(rows.reduce((sum, x) => sum + x.mrr, 0)).toBe(usd.mrr);
  });

  it("a price change of a paying subscription is expansion (or contraction)", async () => {
    const sub = t.fake.state.subscriptions.get(c.subId);
    const item = (sub?.items as { data: Record<string, unknown>[] } | undefined)?.data[0];
    if (item === undefined) throw new Error("no item");
    item.price = t.fake.state.priceObject(FAKE_PRICE_ENTERPRISE);
    item.quantity = 1;
    await update(c, {});
    const r = (await get("/admin/stats/revenue")).json();
    const usd = r.currencies[0];
    // 3 x 29.00 -> 499.00: +412.00 more expansion.
    expect(usd.movement_30d.expansion).toBe(2 * 2_900 + (49_900 - 3 * 2_900));
    expect(usd.by_tier.enterprise).toEqual({ mrr: 2 * 49_900, subscriptions: 2 });
  });

  it("a subscription whose amount was never recorded is reported as unpriced", async () => {
    await t.database.db.execute(
      sql`update customers set subscription_status = 'active' where id = ${plain.customerId}`,
    );
    const r = (await get("/admin/stats/revenue")).json();
    expect(r.unpriced_subscriptions).toBe(1);
    await t.database.db.execute(sql`update customers set subscription_status = null where id = ${plain.customerId}`);
  });

  it("refuses query parameters (400)", async () => {
    expectProblem(await get("/admin/stats/revenue?currency=usd"), 400, "invalid_request");
  });

  it("Stripe deleting the customer churns its MRR (a change to 0)", async () => {
    const before = (await get("/admin/stats/revenue")).json().currencies[0];
    const ev = signedEvent(t.fake, {
      type: "customer.deleted",
      object: { id: b.stripeCustomerId, object: "customer" },
    });
    expect(await deliverOk(t, ev)).toBe("applied");
    const after = (await get("/admin/stats/revenue")).json().currencies[0];
    expect(after.mrr).toBe(before.mrr - 49_900);
    expect(after.past_due).toEqual({ mrr: 0, subscriptions: 0 });
    expect(after.movement_30d.churned).toBe(before.movement_30d.churned + 49_900);
  });

  it("billing-reconcile records a subscription whose amount was never recorded", async () => {
    await t.database.db.execute(sql`delete from subscription_changes where customer_id = ${old.customerId}`);
    expect((await get("/admin/stats/revenue")).json().unpriced_subscriptions).toBe(1);
    const out = { write() {} };
    expect(await billingReconcile(t.config, t.database, { dryRun: false, customerId: old.customerId }, out)).toBe(0);
    const rows = await t.database.db.execute(
      sql`select source, mrr_before::int as before, mrr_after::int as after from subscription_changes where customer_id = ${old.customerId}`,
    );
    expect((rows as unknown as { rows: unknown[] }).rows).toEqual([{ source: "reconcile", before: 0, after: 2_900 }]);
    expect((await get("/admin/stats/revenue")).json().unpriced_subscriptions).toBe(0);
  });
});
