import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customers } from "../../src/platform/db/schema/index.ts";
import { bearer, type Session } from "../auth/helpers.ts";
import { type BillingTestContext, buildBillingApp } from "../billing/helpers.ts";
import { subscribe } from "../billing/webhook-helpers.ts";
import { signUpSuperuser } from "../helpers/admin.ts";

let t: BillingTestContext;
let root: Session;

beforeAll(async () => {
  t = await buildBillingApp();
  root = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

describe("MRR from the stored subscription", () => {
  it("a subscription applied by the webhook stores its price's amount; the list reports and sorts by it", async () => {
    const pro = await subscribe(t, "mrr-pro", "pro");
    const ent = await subscribe(t, "mrr-ent", "enterprise");
    const [row] = await t.database.db.select().from(customers).where(eq(customers.id, pro.customerId));
    expect(row).toMatchObject({
      subscriptionUnitAmount: 2900,
      subscriptionCurrency: "usd",
      subscriptionInterval: "month",
      mrrMinor: 2900,
    });
    const res = await t.app.inject({
      method: "GET",
      url: "/admin/customers?sort=mrr&limit=2",
      headers: bearer(root.access),
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(
      res.json().data.map((c: { id: string; mrr: number; currency: string }) => [c.id, c.mrr, c.currency]),
    ).toEqual([
      [ent.customerId, 49_900, "usd"],
      [pro.customerId, 2900, "usd"],
    ]);
    // Cancelled subscriptions counting 0, and quantity, are checked against /admin/stats/revenue in stats.test.ts.
  });
});
