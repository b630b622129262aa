import { describe, expect, it } from "vitest";
import { MemoryEstopRegistry } from "./estop.ts";
import { MemoryRobotStateStore, validityMs } from "./robot-state-store.ts";

const clock = () => {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
};

describe("MemoryRobotStateStore", () => {
  it("returns the previous action within the validity window and expires it after N periods", async () => {
    const c = clock();
    const s = new MemoryRobotStateStore({ periods: 3, now: c.now });
    await s.set("c1", "r1", [0.01, 0, 0, 0, 0, 0, 1], 5);
    expect(validityMs(5, 3)).toBe(600);
    c.advance(599);
    expect(await s.get("c1", "r1", 5)).toEqual([0.01, 0, 0, 0, 0, 0, 1]);
    c.advance(1);
    expect(await s.get("c1", "r1", 5)).toBeUndefined();
    expect(s.size).toBe(0);
  });
  it("the window follows the control frequency", async () => {
    const c = clock();
    const s = new MemoryRobotStateStore({ now: c.now });
    await s.set("c1", "r1", [0, 0, 0, 0, 0, 0, 0], 15);
    c.advance(250); // 3 periods at 15 Hz = 200 ms
    expect(await s.get("c1", "r1", 15)).toBeUndefined();
  });
  it("is keyed by customer and robot", async () => {
    const s = new MemoryRobotStateStore();
    await s.set("c1", "r1", [1, 0, 0, 0, 0, 0, 0], 5);
    expect(await s.get("c2", "r1", 5)).toBeUndefined();
    expect(await s.get("c1", "r2", 5)).toBeUndefined();
    await s.delete("c1", "r1");
    expect(await s.get("c1", "r1", 5)).toBeUndefined();
  });
  it("stores a copy", async () => {
    const s = new MemoryRobotStateStore();
    const a = [1, 0, 0, 0, 0, 0, 0];
    await s.set("c", "r", a, 5);
    a[0] = 9;
    expect((await s.get("c", "r", 5))?.[0]).toBe(1);
  });
  it("is bounded: least recently used entries go first", async () => {
    const s = new MemoryRobotStateStore({ maxEntries: 3 });
    for (const r of ["a", "b", "c"]) await s.set("c", r, [0, 0, 0, 0, 0, 0, 0], 5);
    await s.get("c", "a", 5); // a is now the most recent
    await s.set("c", "d", [0, 0, 0, 0, 0, 0, 0], 5);
    expect(s.size).toBe(3);
    expect(await s.get("c", "b", 5)).toBeUndefined();
    expect(await s.get("c", "a", 5)).toBeDefined();
    expect(await s.get("c", "d", 5)).toBeDefined();
    for (let i = 0; i < 100; i++) await s.set("c", `x${i}`, [0, 0, 0, 0, 0, 0, 0], 5);
    expect(s.size).toBe(3);
  });
});

describe("MemoryEstopRegistry", () => {
  it("stop, check, clear; isolated per customer; first reason kept", async () => {
    const e = new MemoryEstopRegistry();
    expect(await e.check("c1", "r1")).toBeUndefined();
    await e.stop("c1", "r1", { at: "2026-01-01T00:00:00Z", reason: "collision", inferenceId: "i1" });
    await e.stop("c1", "r1", { at: "2026-01-01T00:00:01Z", reason: "later" });
    expect((await e.check("c1", "r1"))?.reason).toBe("collision");
    expect(await e.check("c2", "r1")).toBeUndefined();
    expect([...(await e.list("c1")).keys()]).toEqual(["r1"]);
    expect(await e.clear("c2", "r1")).toBe(false);
    expect(await e.clear("c1", "r1")).toBe(true);
    expect(await e.clear("c1", "r1")).toBe(false);
    expect(await e.check("c1", "r1")).toBeUndefined();
  });
});
