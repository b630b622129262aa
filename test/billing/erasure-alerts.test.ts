import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  billingMeterReports,
  billingOutbox,
  billingUsageAlerts,
  customers,
  stripeEvents,
  usageCounters,
} from "../../src/platform/db/schema/index.ts";
import type { EmailMessage } from "../../src/platform/email.ts";
import { bearer, PASSWORD, signUp } from "../auth/helpers.ts";
import { FAKE_PRICE_PRO } from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";

const clock = { t: Date.UTC(2026, 11, 10, 12, 0, 0) };
const MONTH = "2026-12-01";
let t: BillingTestContext;
beforeAll(async () => {
  t = await buildBillingApp({ now: () => clock.t, fakeNow: () => Math.floor(clock.t / 1000) });
});
afterAll(async () => {
  await t?.close();
});

async function setUsage(customerId: string, requests: number, streamMs = 0) {
  await t.database.db
    .insert(usageCounters)
    .values({ customerId, month: MONTH, requests, streamMs })
    .onConflictDoUpdate({ target: [usageCounters.customerId, usageCounters.month], set: { requests, streamMs } });
}

async function metricValue(name: string): Promise<number> {
  const m = await t.app.platform.metrics.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
}

describe("quota alert emails", () => {
  it("emails the owner once at 80 % and once at 100 % per meter and month", async () => {
    const sent: EmailMessage[] = [];
    const spy = vi.spyOn(t.app.platform.email, "enqueue").mockImplementation((m) => {
      sent.push(m);
    });
    try {
      const s = await signUp(t, "alerts");
      const alertsFor = () => sent.filter((m) => m.to === s.email && m.kind.startsWith("quota_alert"));
      await setUsage(s.customerId, 7_999); // free: 10,000 included
      await t.runJobs();
      expect(alertsFor()).toHaveLength(0);

      await setUsage(s.customerId, 8_000);
      await t.runJobs();
      await t.runJobs();
      expect(alertsFor().map((m) => m.kind)).toEqual(["quota_alert_80"]);
      expect(alertsFor()[0]?.text).toContain("8,000 of 10,000 requests");
      expect(alertsFor()[0]?.text).toContain("refused (HTTP 429)");

      await setUsage(s.customerId, 10_000);
      await t.runJobs();
      await t.runJobs();
      expect(alertsFor().map((m) => m.kind)).toEqual(["quota_alert_80", "quota_alert_100"]);

      // Stream time jumps past both thresholds at once: both recorded, one (100 %) email.
      await setUsage(s.customerId, 10_000, 5 * 3_600_000);
      await t.runJobs();
      const stream = alertsFor().filter((m) => m.subject.includes("stream"));
      expect(stream.map((m) => m.kind)).toEqual(["quota_alert_100"]);
      const rows = await t.database.db
        .select({ meter: billingUsageAlerts.meter, threshold: billingUsageAlerts.threshold })
        .from(billingUsageAlerts)
        .where(eq(billingUsageAlerts.customerId, s.customerId));
      expect(rows.map((r) => `${r.meter}@${r.threshold}`).sort()).toEqual([
        "requests@100",
        "requests@80",
        "stream_seconds@100",
        "stream_seconds@80",
      ]);

      // Next month starts over.
      clock.t = Date.UTC(2027, 0, 3, 12, 0, 0);
      await t.database.db
        .insert(usageCounters)
        .values({ customerId: s.customerId, month: "2027-01-01", requests: 9_000, streamMs: 0 });
      await t.runJobs();
      expect(alertsFor().map((m) => m.kind)).toEqual([
        "quota_alert_80",
        "quota_alert_100",
        "quota_alert_100",
        "quota_alert_80",
      ]);
    } finally {
      spy.mockRestore();
      clock.t = Date.UTC(2026, 11, 10, 12, 0, 0);
    }
  });
});

describe("erasure of Stripe data", () => {
  it("erases with Stripe down (outbox pending, counted), then the job cancels and deletes in Stripe", async () => {
    const s = await signUp(t, "erase");
    const cus = t.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
    const sub = t.fake.state.putSubscription({ customer: cus.id as string, price: FAKE_PRICE_PRO });
    await t.database.db
      .update(customers)
      .set({ tier: "pro", stripeCustomerId: cus.id as string, stripeSubscriptionId: sub.id as string })
      .where(eq(customers.id, s.customerId));
    await t.database.db.insert(stripeEvents).values({
      id: `evt_${s.customerId.slice(0, 8)}`,
      type: "invoice.paid",
      createdAt: new Date(clock.t),
      outcome: "applied",
      customerId: s.customerId,
    });
    await t.database.db
      .insert(billingMeterReports)
      .values({ customerId: s.customerId, period: MONTH, meter: "requests", reported: 5 });
    await t.database.db
      .insert(billingUsageAlerts)
      .values({ customerId: s.customerId, period: MONTH, meter: "requests", threshold: 80 });

    t.fake.setDown(true);
    const del = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: bearer(s.access),
      payload: { password: PASSWORD },
    });
    expect(del.statusCode, del.body).toBe(204);
    expect(await t.database.db.select().from(customers).where(eq(customers.id, s.customerId))).toHaveLength(0);
    const rows = await t.database.db
      .select()
      .from(billingOutbox)
      .where(eq(billingOutbox.stripeCustomerId, cus.id as string));
    expect(rows).toHaveLength(1);
    const row = rows[0] as typeof billingOutbox.$inferSelect;
    expect(row).toMatchObject({ kind: "erase_customer", stripeSubscriptionId: sub.id, doneAt: null, attempts: 1 });
    expect(row.lastError).toContain("BillingUnavailableError");
    expect(row.lastError).not.toContain("sk_");
    expect(await metricValue("vla_billing_outbox_pending")).toBe(1);
    expect(await metricValue("vla_billing_outbox_failures_total")).toBeGreaterThanOrEqual(1);
    const events = await t.database.db
      .select()
      .from(stripeEvents)
      .where(eq(stripeEvents.id, `evt_${s.customerId.slice(0, 8)}`));
    expect(events[0]?.customerId).toBeNull();
    expect(t.fake.state.subscriptions.get(sub.id as string)?.status).toBe("active");

    // Still down at the next tick: backoff, another attempt counted.
    clock.t += 31_000;
    await t.runJobs();
    const again = (await t.database.db.select().from(billingOutbox).where(eq(billingOutbox.id, row.id)))[0];
    expect(again?.attempts).toBe(2);
    expect(again?.nextAttemptAt.getTime()).toBe(clock.t + 60_000);

    // Stripe back, backoff over: the job finishes the erasure.
    t.fake.setDown(false);
    await t.runJobs();
    expect(
      (await t.database.db.select().from(billingOutbox).where(eq(billingOutbox.id, row.id)))[0]?.doneAt,
    ).toBeNull();
    clock.t += 61_000;
    await t.runJobs();
    const done = (await t.database.db.select().from(billingOutbox).where(eq(billingOutbox.id, row.id)))[0];
    expect(done?.doneAt).not.toBeNull();
    expect(t.fake.state.subscriptions.get(sub.id as string)?.status).toBe("canceled");
    expect(t.fake.state.deletedCustomers.has(cus.id as string)).toBe(true);
    expect(await metricValue("vla_billing_outbox_pending")).toBe(0);
  });

  it("with Stripe up, the erasure tells Stripe right after the commit", async () => {
    const s = await signUp(t, "erase-now");
    const cus = t.fake.state.putCustomer({ metadata: { customer_id: s.customerId } });
    await t.database.db
      .update(customers)
      .set({ stripeCustomerId: cus.id as string })
      .where(eq(customers.id, s.customerId));
    const del = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: bearer(s.access),
      payload: { password: PASSWORD },
    });
    expect(del.statusCode, del.body).toBe(204);
    expect(t.fake.state.deletedCustomers.has(cus.id as string)).toBe(true);
    const rows = await t.database.db
      .select()
      .from(billingOutbox)
      .where(eq(billingOutbox.stripeCustomerId, cus.id as string));
    expect(rows[0]?.doneAt).not.toBeNull();
  });
});
