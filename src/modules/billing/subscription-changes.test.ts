import { describe, expect, it } from "vitest";
import { monthlyAmount } from "./subscription-changes.ts";

const base = { status: "active", unitAmount: 2_900, quantity: 1, interval: "month", intervalCount: 1 };

describe("monthlyAmount", () => {
  it("normalizes to a month: yearly / 12, weekly x 52/12, every n intervals / n, times the quantity", () => {
    expect(monthlyAmount(base)).toBe(2_900);
    expect(monthlyAmount({ ...base, unitAmount: 29_000, interval: "year" })).toBe(2_417);
    expect(monthlyAmount({ ...base, unitAmount: 1_000, interval: "week" })).toBe(4_333);
    expect(monthlyAmount({ ...base, unitAmount: 9_000, intervalCount: 3 })).toBe(3_000);
    expect(monthlyAmount({ ...base, quantity: 3 })).toBe(8_700);
  });

  it("counts active and past_due only; no unit amount or interval gives 0", () => {
    expect(monthlyAmount({ ...base, status: "past_due" })).toBe(2_900);
    for (const status of ["trialing", "incomplete", "paused", "unpaid", "canceled", null]) {
      expect(monthlyAmount({ ...base, status })).toBe(0);
    }
    expect(monthlyAmount({ ...base, unitAmount: null })).toBe(0);
    expect(monthlyAmount({ ...base, interval: null })).toBe(0);
  });
});
