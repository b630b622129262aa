import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { billingReconcile } from "../../src/modules/billing/reconcile.ts";
import { auditLog } from "../../src/platform/db/schema/index.ts";
import { FAKE_PRICE_ENTERPRISE } from "../helpers/stripe-fake.ts";
import { type BillingTestContext, buildBillingApp } from "./helpers.ts";
import { customerRow, subscribe } from "./webhook-helpers.ts";

let t: BillingTestContext;
beforeAll(async () => {
  t = await buildBillingApp();
});
afterAll(async () => {
  await t?.close();
});

function capture() {
  let text = "";
  return {
    out: {
      write(s: string) {
        text += s;
      },
    },
    text: () => text,
  };
}

describe("npm run cli -- billing-reconcile", () => {
  it("finds customers whose copy missed webhooks, reports them on --dry-run, and corrects them", async () => {
    const canceled = await subscribe(t, "rec-canceled");
    const upgraded = await subscribe(t, "rec-upgraded");
    const fine = await subscribe(t, "rec-fine");
    // Webhooks that never arrived: one subscription ended, another moved to enterprise.
    t.fake.state.updateSubscription(canceled.subId, { status: "canceled" });
    t.fake.state.putSubscription({
      id: upgraded.subId,
      customer: upgraded.stripeCustomerId,
      price: FAKE_PRICE_ENTERPRISE,
    });

    const dry = capture();
    expect(await billingReconcile(t.config, t.database, { dryRun: true }, dry.out)).toBe(0);
    expect(dry.text()).toContain(canceled.customerId);
    expect(dry.text()).toContain(upgraded.customerId);
    expect(dry.text()).not.toContain(fine.customerId);
    expect(dry.text()).toMatch(/3 customer\(s\) checked, 2 would change/);
    expect((await customerRow(t, canceled.customerId)).tier).toBe("pro");
    expect((await customerRow(t, upgraded.customerId)).tier).toBe("pro");
    const tierChanges = async (customerId: string) =>
      (
        await t.database.db
          .select()
          .from(auditLog)
          .where(and(eq(auditLog.customerId, customerId), eq(auditLog.action, "customer.tier_change")))
      ).map((r) => r.details);
    // The dry run rolled its audit entries back with its changes: only checkout's free -> pro.
    expect(await tierChanges(upgraded.customerId)).toHaveLength(1);

    const run = capture();
    expect(await billingReconcile(t.config, t.database, { dryRun: false }, run.out)).toBe(0);
    expect(run.text()).toMatch(/3 customer\(s\) checked, 2 corrected/);
    expect(await customerRow(t, canceled.customerId)).toMatchObject({ tier: "free", subscriptionStatus: "canceled" });
    expect(await customerRow(t, upgraded.customerId)).toMatchObject({
      tier: "enterprise",
      stripePriceId: FAKE_PRICE_ENTERPRISE,
    });
    expect((await customerRow(t, fine.customerId)).tier).toBe("pro");
    expect(await tierChanges(upgraded.customerId)).toContainEqual({
      from: "pro",
      to: "enterprise",
      source: "stripe_reconcile",
      subscription_status: "active",
    });
    expect(await tierChanges(canceled.customerId)).toContainEqual({
      from: "pro",
      to: "free",
      source: "stripe_reconcile",
      subscription_status: "canceled",
    });
    expect(await tierChanges(fine.customerId)).toHaveLength(1);

    const again = capture();
    expect(await billingReconcile(t.config, t.database, { dryRun: false }, again.out)).toBe(0);
    expect(again.text()).toMatch(/3 customer\(s\) checked, 0 corrected/);
  });

  it("Stripe down: exit 1 with a message, nothing written", async () => {
    const s = await subscribe(t, "rec-down");
    t.fake.state.updateSubscription(s.subId, { status: "canceled" });
    t.fake.setDown(true);
    const c = capture();
    try {
      expect(await billingReconcile(t.config, t.database, { dryRun: false, customerId: s.customerId }, c.out)).toBe(1);
    } finally {
      t.fake.setDown(false);
    }
    expect(c.text()).toMatch(/stopped/);
    expect((await customerRow(t, s.customerId)).tier).toBe("pro");
  });
});
