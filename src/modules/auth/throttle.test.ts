import { describe, expect, it } from "vitest";
import { FailureThrottle } from "./throttle.ts";

const policy = { free: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, forgetAfterMs: 60_000 };

describe("FailureThrottle", () => {
  it("lets the free failures through, then blocks with doubling delays up to the cap", () => {
    const t = new FailureThrottle(policy);
    const now = 1_000_000;
    for (let i = 0; i < 3; i++) t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(0);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(1_000);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(2_000);
    t.failure("a", now);
    t.failure("a", now);
    t.failure("a", now);
    expect(t.retryAfterMs("a", now)).toBe(8_000);
    expect(t.retryAfterMs("a", now + 8_000)).toBe(0);
    expect(t.retryAfterMs("b", now)).toBe(0);
  });

  it("forgets failures after the quiet period and on success", () => {
    const t = new FailureThrottle(policy);
    for (let i = 0; i < 4; i++) t.failure("a", 0);
    expect(t.failures("a", 0)).toBe(4);
    expect(t.failures("a", 61_001)).toBe(0);
    for (let i = 0; i < 4; i++) t.failure("b", 0);
    t.success("b");
    expect(t.retryAfterMs("b", 0)).toBe(0);
  });

  it("stays bounded in memory", () => {
    const t = new FailureThrottle(policy, 10);
    for (let i = 0; i < 100; i++) t.failure(`k${i}`, 0);
    expect(t.failures("k99", 0)).toBe(1);
    expect(t.failures("k0", 0)).toBe(0);
  });
});
