import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { assign, pickVariant, unitHash } from "./assignment.ts";

const variants = [
  { name: "control", model: "mock-openvla-7b", weight: 3 },
  { name: "candidate", model: "mock-pi0", weight: 1 },
];

describe("experiment assignment", () => {
  it("picks by cumulative weight", () => {
    expect(pickVariant(variants, 0).name).toBe("control");
    expect(pickVariant(variants, 0.7499).name).toBe("control");
    expect(pickVariant(variants, 0.75).name).toBe("candidate");
    expect(pickVariant(variants, 0.999999).name).toBe("candidate");
  });

  it("respects the weights over many robots", () => {
    const id = randomUUID();
    let candidate = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) if (assign(id, "robot_id", variants, `robot-${i}`).name === "candidate") candidate++;
    // 25 % expected; the binomial standard deviation is 0.3 %: 5 sigma either side.
    expect(candidate / n).toBeGreaterThan(0.235);
    expect(candidate / n).toBeLessThan(0.265);
  });

  it("is sticky per robot and the same for any caller (no state: two routers agree)", () => {
    const id = randomUUID();
    const first = new Map<string, string>();
    for (let i = 0; i < 200; i++) first.set(`arm-${i}`, assign(id, "robot_id", variants, `arm-${i}`).name);
    // Another "instance": a fresh call path with a different random source never used for robots.
    for (let i = 0; i < 200; i++) {
      expect(assign(id, "robot_id", variants, `arm-${i}`, () => 0.99).name).toBe(first.get(`arm-${i}`));
    }
    expect(unitHash(id, "arm-1")).toBe(unitHash(id, "arm-1"));
    expect(unitHash(id, "arm-1")).toBeGreaterThanOrEqual(0);
    expect(unitHash(id, "arm-1")).toBeLessThan(1);
  });

  it("another experiment reshuffles the robots", () => {
    const a = randomUUID();
    const b = randomUUID();
    let differ = 0;
    for (let i = 0; i < 200; i++) if (unitHash(a, `r${i}`) !== unitHash(b, `r${i}`)) differ++;
    expect(differ).toBe(200);
  });

  it("draws per request without a robot id, or with assignment request", () => {
    expect(assign(randomUUID(), "robot_id", variants, undefined, () => 0.9).name).toBe("candidate");
    expect(assign(randomUUID(), "robot_id", variants, undefined, () => 0.1).name).toBe("control");
    expect(assign(randomUUID(), "request", variants, "arm-1", () => 0.9).name).toBe("candidate");
    expect(assign(randomUUID(), "request", variants, "arm-1", () => 0.1).name).toBe("control");
  });
});
