import { describe, expect, it } from "vitest";
import type { SubscriptionSnapshot } from "./billing-client.ts";
import { outranks } from "./webhook.service.ts";

const sub = (id: string, status: SubscriptionSnapshot["status"], created: number): SubscriptionSnapshot => ({
  id,
  customerId: "cus_1",
  status,
  priceId: "price_pro",
  unitAmount: 100,
  currency: "usd",
  interval: "month",
  currentPeriodStart: null,
  currentPeriodEnd: null,
  cancelAtPeriodEnd: false,
  created,
  ourCustomerId: null,
  latestInvoiceId: null,
});

describe("outranks: which subscription is the customer's current one", () => {
  it("live (active, trialing, past_due) beats dead whatever the age", () => {
    for (const live of ["active", "trialing", "past_due"] as const) {
      for (const dead of ["canceled", "unpaid", "paused", "incomplete", "incomplete_expired"] as const) {
        expect(outranks(sub("sub_a", live, 1), sub("sub_b", dead, 2))).toBe(true);
        expect(outranks(sub("sub_b", dead, 2), sub("sub_a", live, 1))).toBe(false);
      }
    }
  });

  it("between two live or two dead ones the newer wins, then the id breaks a tie: a total order", () => {
    expect(outranks(sub("sub_a", "canceled", 2), sub("sub_b", "canceled", 1))).toBe(true);
    expect(outranks(sub("sub_a", "active", 1), sub("sub_b", "trialing", 2))).toBe(false);
    expect(outranks(sub("sub_b", "active", 1), sub("sub_a", "active", 1))).toBe(true);
    expect(outranks(sub("sub_a", "active", 1), sub("sub_b", "active", 1))).toBe(false);
    expect(outranks(sub("sub_a", "active", 1), sub("sub_a", "active", 1))).toBe(false);
  });
});
