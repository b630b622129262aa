import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChunkAggregator, DEFAULT_SMOOTHING, SessionSmoother, smoothAction } from "./smoothing.ts";

const r = (v: number[]) => v.map((x) => Math.round(x * 1e9) / 1e9);

describe("smoothAction", () => {
  it("none returns the action unchanged", () => {
    expect(smoothAction([1, 2, 3], DEFAULT_SMOOTHING, [9, 9, 9], [])).toEqual([1, 2, 3]);
  });

  it("ema: alpha * new + (1 - alpha) * previous sent, gripper (last dim) untouched", () => {
    const o = { ...DEFAULT_SMOOTHING, method: "ema" as const, alpha: 0.25 };
    expect(r(smoothAction([4, 8, 1], o, [0, 0, 0], []))).toEqual([1, 2, 1]);
    expect(smoothAction([4, 8, 1], o, null, [])).toEqual([4, 8, 1]);
  });

  it("ema smooths the gripper when asked", () => {
    const o = { ...DEFAULT_SMOOTHING, method: "ema" as const, alpha: 0.5, gripper: true };
    expect(smoothAction([2, 1], o, [0, 0], [])).toEqual([1, 0.5]);
  });

  it("moving_average: mean of the last `window` raw actions including this one", () => {
    const o = { ...DEFAULT_SMOOTHING, method: "moving_average" as const, window: 3 };
    expect(
      smoothAction([6, 1], o, null, [
        [0, 0],
        [3, 0],
        [3, 0],
      ]),
    ).toEqual([4, 1]);
    expect(smoothAction([6, 1], o, null, [[2, 0]])).toEqual([4, 1]);
    expect(smoothAction([6, 1], { ...o, window: 1 }, null, [[2, 0]])).toEqual([6, 1]);
  });

  it("property: smoothed values lie between the inputs; the gripper is never changed by default", () => {
    const vec = fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 7, maxLength: 7 });
    fc.assert(
      fc.property(vec, vec, fc.double({ min: 0.01, max: 1, noNaN: true }), (x, prev, alpha) => {
        const out = smoothAction(x, { ...DEFAULT_SMOOTHING, method: "ema", alpha }, prev, []);
        expect(out[6]).toBe(x[6]);
        for (let i = 0; i < 6; i++) {
          const lo = Math.min(x[i] as number, prev[i] as number) - 1e-9;
          const hi = Math.max(x[i] as number, prev[i] as number) + 1e-9;
          expect(out[i]).toBeGreaterThanOrEqual(lo);
          expect(out[i]).toBeLessThanOrEqual(hi);
        }
      }),
    );
  });
});

describe("ChunkAggregator", () => {
  const chunk = (...vals: number[]) => vals.map((v) => [v]);

  it("latest: the new chunk wins on overlap", () => {
    const a = new ChunkAggregator("latest");
    a.add(0, chunk(1, 2, 3, 4));
    expect(a.add(2, chunk(10, 20, 30, 40))).toEqual(chunk(10, 20, 30, 40));
  });

  it("weighted: 0.3 old + 0.7 new per overlapping timestep (seq = timestep)", () => {
    const a = new ChunkAggregator("weighted");
    a.add(0, chunk(1, 2, 3, 4));
    const out = a.add(2, chunk(10, 20, 30, 40)).map((s) => r(s));
    expect(out).toEqual([[0.3 * 3 + 7], [0.3 * 4 + 14], [30], [40]].map((s) => r(s)));
  });

  it("average: the mean of every chunk that predicted the timestep", () => {
    const a = new ChunkAggregator("average");
    a.add(0, chunk(3, 3, 3));
    a.add(1, chunk(6, 6, 6));
    const out = a.add(2, chunk(9, 9, 9));
    expect(out).toEqual(chunk(6, 7.5, 9));
  });

  it("drops timesteps in the past; no overlap means the new chunk as is", () => {
    const a = new ChunkAggregator("weighted");
    a.add(0, chunk(1, 2));
    expect(a.add(5, chunk(7, 8))).toEqual(chunk(7, 8));
    expect(a.size).toBe(2);
  });
});

describe("SessionSmoother", () => {
  it("single actions (no chunk) are only smoothed", () => {
    const s = new SessionSmoother({ ...DEFAULT_SMOOTHING, method: "moving_average", window: 2 }, "weighted");
    expect(s.apply(1, { action: [2, 1] }, null)).toEqual({ action: [2, 1] });
    expect(s.apply(2, { action: [4, 0] }, [2, 1])).toEqual({ action: [3, 0] });
  });
});
