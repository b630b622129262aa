import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { calendar } from "./calendar.ts";
import { type CounterState, decide, MINUTE_MS } from "./decide.ts";
import { MemoryLimiter } from "./memory-limiter.ts";
import { effectiveLimits, type Limits } from "./policy.ts";

const far = { msUntilNextDay: 1e9, msUntilNextMonth: 1e10 };
const zero: CounterState = { tat: 0, day: 0, month: 0 };

describe("decide (GCRA + calendar quotas)", () => {
  it("allows exactly the minute limit in a burst, then one per emission interval", () => {
    const limits: Limits = { perMinute: 7, perDay: null, perMonth: null };
    let s = zero;
    const now = 1_000_000;
    for (let i = 0; i < 7; i++) {
      const d = decide(s, limits, now, far);
      expect(d.allowed, `request ${i + 1}`).toBe(true);
      expect(d.minuteRemaining).toBe(6 - i);
      s = d.state;
    }
    const rejected = decide(s, limits, now, far);
    expect(rejected.allowed).toBe(false);
    expect(rejected.violated).toEqual(["minute"]);
    expect(rejected.retryAfterMs).toBeCloseTo(MINUTE_MS / 7, 6);
    expect(decide(s, limits, now + Math.floor(MINUTE_MS / 7), far).allowed).toBe(false);
    expect(decide(s, limits, now + Math.ceil(MINUTE_MS / 7), far).allowed).toBe(true);
  });

  it("rejects without consuming anything when any window refuses", () => {
    const limits: Limits = { perMinute: 10, perDay: 2, perMonth: 100 };
    const s: CounterState = { tat: 0, day: 2, month: 5 };
    const d = decide(s, limits, 5_000, { msUntilNextDay: 7_000, msUntilNextMonth: 9_000 });
    expect(d.allowed).toBe(false);
    expect(d.violated).toEqual(["day"]);
    expect(d.state).toEqual(s);
    expect(d.retryAfterMs).toBe(7_000);
    expect(d.minuteRemaining).toBe(10);
  });

  it("treats null as unlimited and 0 as closed", () => {
    expect(decide(zero, { perMinute: null, perDay: null, perMonth: null }, 1, far).allowed).toBe(true);
    expect(decide(zero, { perMinute: 0, perDay: null, perMonth: null }, 1, far).violated).toEqual(["minute"]);
  });

  it("never allows more than limit + elapsed/interval over any stretch (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 300 }),
        (limit, gaps) => {
          const limits: Limits = { perMinute: limit, perDay: null, perMonth: null };
          let s = zero;
          let now = 10_000_000;
          const allowedAt: number[] = [];
          for (const g of gaps) {
            now += g;
            const d = decide(s, limits, now, far);
            if (d.allowed) allowedAt.push(now);
            s = d.state;
          }
          const interval = MINUTE_MS / limit;
          for (let i = 0; i < allowedAt.length; i++) {
            for (let j = i; j < allowedAt.length; j++) {
              const span = (allowedAt[j] as number) - (allowedAt[i] as number);
              expect(j - i + 1).toBeLessThanOrEqual(limit + Math.floor(span / interval + 1e-9));
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("MemoryLimiter", () => {
  const cal = calendar(Date.UTC(2026, 10, 26, 12));
  const base = { customerId: "c", now: Date.UTC(2026, 10, 26, 12), cal, cost: 1 };

  it("asks for the durable month count at first use and starts from it", () => {
    const m = new MemoryLimiter();
    const limits: Limits = { perMinute: 100, perDay: 100, perMonth: 10 };
    expect(m.check({ ...base, limits })).toBe("needs-seed");
    const r = m.check({ ...base, limits, monthSeed: 9 });
    expect(r).toMatchObject({ allowed: true, month: 10 });
    expect(m.check({ ...base, limits })).toMatchObject({ allowed: false, violated: ["month"] });
  });

  it("as a fallback divides limits by the instance count", () => {
    const m = new MemoryLimiter(2);
    const limits: Limits = { perMinute: 10, perDay: 6, perMonth: 100 };
    let allowed = 0;
    for (let i = 0; i < 20; i++) {
      const r = m.check({ ...base, limits, monthSeed: 90 });
      if (r !== "needs-seed" && r.allowed) allowed++;
    }
    expect(allowed).toBe(3); // day 6 / 2 instances
    const m2 = new MemoryLimiter(2);
    let monthAllowed = 0;
    for (let i = 0; i < 20; i++) {
      const r = m2.check({ ...base, limits: { perMinute: null, perDay: null, perMonth: 100 }, monthSeed: 90 });
      if (r !== "needs-seed" && r.allowed) monthAllowed++;
    }
    expect(monthAllowed).toBe(5); // (100 - 90) / 2
  });
});

describe("effectiveLimits: metered overage", () => {
  const none = { rateLimitPerMinute: null, quotaPerDay: 1_000_000, quotaPerMonth: null };

  it("raises a Pro customer's hard month limit to included + cap, and the limiter enforces it", () => {
    const limits = effectiveLimits("pro", { ...none, overageEnabled: true, overageCapRequests: 2_500 });
    expect(limits.perMonth).toBe(102_500);
    expect(limits.overage).toEqual({ included: 100_000, cap: 2_500 });
    const m = new MemoryLimiter();
    const req = {
      customerId: "o",
      now: Date.UTC(2026, 10, 26, 12),
      cal: calendar(Date.UTC(2026, 10, 26, 12)),
      cost: 1,
    };
    const seeded = m.check({ ...req, limits, monthSeed: 102_498 });
    expect(seeded).toMatchObject({ allowed: true, month: 102_499 });
    expect(m.check({ ...req, limits })).toMatchObject({ allowed: true, month: 102_500 });
    expect(m.check({ ...req, limits })).toMatchObject({ allowed: false, violated: ["month"] });
  });

  it("keeps the included quota when overage is off, capless, or the tier may not opt in", () => {
    expect(effectiveLimits("pro", { ...none, overageEnabled: false, overageCapRequests: 9 }).perMonth).toBe(100_000);
    expect(effectiveLimits("pro", { ...none, overageEnabled: true, overageCapRequests: null }).perMonth).toBe(100_000);
    const free = effectiveLimits("free", { ...none, overageEnabled: true, overageCapRequests: 9 });
    expect(free).toEqual({ perMinute: 10, perDay: 1_000_000, perMonth: 10_000 });
    expect(effectiveLimits("enterprise", { ...none, overageEnabled: true, overageCapRequests: 9 }).perMonth).toBeNull();
  });

  it("adds the cap to a per-customer month override", () => {
    const limits = effectiveLimits("pro", { ...none, quotaPerMonth: 5, overageEnabled: true, overageCapRequests: 3 });
    expect(limits.perMonth).toBe(8);
    expect(limits.overage).toEqual({ included: 5, cap: 3 });
  });
});

describe("calendar", () => {
  it("names UTC days and months and their ends", () => {
    const c = calendar(Date.UTC(2026, 11, 31, 23, 59, 59, 999));
    expect(c.day).toBe("20261231");
    expect(c.month).toBe("2026-12-01");
    expect(c.nextDayAt).toBe(Date.UTC(2027, 0, 1));
    expect(c.nextMonthAt).toBe(Date.UTC(2027, 0, 1));
    expect(calendar(Date.UTC(2027, 0, 1)).month).toBe("2027-01-01");
  });
});

describe("Redis key layout", () => {
  it("puts every key of a customer under one {customerId} hash tag", async () => {
    const { limitKeys } = await import("./redis-limiter.ts");
    const keys = limitKeys("vla:", "5e0c7a3c-2f7e-4b8a-9a51-0c2a8b4d6e1f", "20261126", "2026-11-01");
    expect(keys).toEqual([
      "vla:rl:{5e0c7a3c-2f7e-4b8a-9a51-0c2a8b4d6e1f}:gcra",
      "vla:rl:{5e0c7a3c-2f7e-4b8a-9a51-0c2a8b4d6e1f}:d:20261126",
      "vla:rl:{5e0c7a3c-2f7e-4b8a-9a51-0c2a8b4d6e1f}:m:2026-11-01",
    ]);
  });
});
