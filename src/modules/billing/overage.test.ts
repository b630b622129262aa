import { describe, expect, it } from "vitest";
import { OUTBOX_MAX_BACKOFF_MS, outboxBackoffMs } from "./outbox.ts";
import { overageTotal } from "./overage.ts";
import { quotaAlertEmail } from "./usage.emails.ts";

const row = {
  customerId: "c",
  period: "2026-12-01",
  meter: "requests",
  reported: 0,
  pendingTo: null,
  pendingIdentifier: null,
  updatedAt: new Date(0),
  tier: "pro" as const,
  stripeCustomerId: "cus_1",
  quotaPerMonth: null,
  streamSecondsPerMonth: null,
  capRequests: 500 as number | null,
  capStream: 60 as number | null,
  requests: 0,
  streamMs: 0,
};

describe("overageTotal", () => {
  it("is min(max(0, used - included), cap) per meter, with overrides and stream seconds floored", () => {
    expect(overageTotal({ ...row, requests: 99_999 }, "requests")).toBe(0);
    expect(overageTotal({ ...row, requests: 100_123 }, "requests")).toBe(123);
    expect(overageTotal({ ...row, requests: 900_000 }, "requests")).toBe(500);
    expect(overageTotal({ ...row, quotaPerMonth: 10, requests: 25 }, "requests")).toBe(15);
    expect(overageTotal({ ...row, streamSecondsPerMonth: 10, streamMs: 12_999 }, "stream_seconds")).toBe(2);
    expect(overageTotal({ ...row, streamSecondsPerMonth: 10, streamMs: 999_999 }, "stream_seconds")).toBe(60);
  });

  it("is 0 without a cap or for a tier that cannot have overage", () => {
    expect(overageTotal({ ...row, capRequests: null, requests: 200_000 }, "requests")).toBe(0);
    expect(overageTotal({ ...row, tier: "free", requests: 200_000 }, "requests")).toBe(0);
    expect(overageTotal({ ...row, tier: "enterprise", requests: 200_000 }, "requests")).toBe(0);
  });
});

describe("outbox backoff", () => {
  it("starts at 30 s, doubles, and stops growing at the maximum", () => {
    expect([1, 2, 3, 4].map(outboxBackoffMs)).toEqual([30_000, 60_000, 120_000, 240_000]);
    expect(outboxBackoffMs(40)).toBe(OUTBOX_MAX_BACKOFF_MS);
  });
});

describe("quota alert email", () => {
  it("says what happens next and escapes what it puts in HTML", () => {
    const base = {
      to: "o@example.com",
      meter: "requests" as const,
      used: 80_000,
      included: 100_000,
      period: "2026-12-01",
      billingUrl: "https://app.example.com/billing?a=<b>",
    };
    const soft = quotaAlertEmail({ ...base, threshold: 80, overageCap: null });
    expect(soft.kind).toBe("quota_alert_80");
    expect(soft.text).toContain("80,000 of 100,000 requests");
    expect(soft.text).toContain("At 100 %");
    expect(soft.html).not.toContain("<b>");
    const billed = quotaAlertEmail({ ...base, meter: "stream_seconds", threshold: 100, overageCap: 3_600 });
    expect(billed.subject).toContain("stream robot-seconds");
    expect(billed.text).toContain("billed per unit, up to 3,600");
  });
});
