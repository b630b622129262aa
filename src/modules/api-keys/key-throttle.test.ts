import { afterEach, describe, expect, it } from "vitest";
import { KeyFailureThrottle } from "./key-throttle.ts";

describe("KeyFailureThrottle", () => {
  let now = 1_000_000;
  const throttles: KeyFailureThrottle[] = [];
  const make = (limit: number) => {
    const t = new KeyFailureThrottle(limit, { windowMs: 60_000, now: () => now });
    throttles.push(t);
    return t;
  };
  afterEach(() => {
    for (const t of throttles.splice(0)) t.close();
  });

  it("does not throttle below the limit, per IP", () => {
    const t = make(2);
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: false });
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    expect(t.check("b", "k1")).toEqual({ throttled: false });
  });

  it("looks up at most `limit` distinct keys per throttled IP and window; repeats are free", () => {
    const t = make(2);
    t.fail("a");
    t.fail("a");
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    for (let i = 0; i < 5; i++) expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: true });
    expect(t.check("a", "k3")).toEqual({ throttled: true, lookup: false });
    expect(t.check("a", "k1")).toEqual({ throttled: true, lookup: true });
  });

  it("forgets everything when the window ends", () => {
    const t = make(1);
    expect(t.fail("a")).toBe(60);
    expect(t.check("a", "k1").throttled).toBe(true);
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: false });
    now += 60_000;
    expect(t.check("a", "k2")).toEqual({ throttled: false });
    t.fail("a");
    expect(t.check("a", "k2")).toEqual({ throttled: true, lookup: true });
  });
});
