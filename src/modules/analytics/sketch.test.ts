import { describe, expect, it } from "vitest";
import { ALPHA, decodeSketch, encodeSketch, Sketch } from "./sketch.ts";

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function lognormal(r: () => number, median: number, sigma: number): number {
  const u = Math.max(r(), 1e-12);
  const v = r();
  return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
}

/** PostgreSQL's percentile_cont: linear interpolation between the ranks around q (n - 1). */
function percentileCont(sorted: number[], q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const a = sorted[lo] as number;
  return lo + 1 < sorted.length ? a + (pos - lo) * ((sorted[lo + 1] as number) - a) : a;
}

describe("Sketch (DDSketch)", () => {
  it("answers quantiles within ALPHA of percentile_cont, small and large samples", () => {
    const r = rng(7);
    for (const n of [3, 50, 1_000, 20_000]) {
      const values = Array.from({ length: n }, () => lognormal(r, 40, 1.2));
      const s = new Sketch();
      for (const v of values) s.add(v);
      const sorted = values.slice().sort((a, b) => a - b);
      for (const q of [0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1]) {
        const exact = percentileCont(sorted, q);
        const est = s.quantile(q) as number;
        expect(Math.abs(est - exact) / exact).toBeLessThanOrEqual(ALPHA + 1e-12);
      }
    }
  });

  it("merging parts (through JSON) equals sketching the whole, in any order", () => {
    const r = rng(11);
    const whole = new Sketch();
    const parts = Array.from({ length: 9 }, () => new Sketch());
    for (let i = 0; i < 5_000; i++) {
      // Parts with very different ranges so merging must grow both ends.
      const v = i % 3 === 0 ? lognormal(r, 0.5, 0.5) : i % 3 === 1 ? lognormal(r, 2_000, 0.3) : r() < 0.05 ? 0 : 30;
      whole.add(v);
      parts[(i * 7) % 9]?.add(v);
    }
    const forward = new Sketch();
    for (const p of parts) forward.merge(JSON.parse(JSON.stringify(p)));
    const backward = new Sketch();
    for (const p of parts.slice().reverse()) backward.merge(p);
    expect(forward.toJSON()).toEqual(whole.toJSON());
    expect(backward.toJSON()).toEqual(whole.toJSON());
    expect(forward.count).toBe(5_000);
    // The stored binary form round-trips (negative offsets and large counts included).
    expect(decodeSketch(encodeSketch(whole)).toJSON()).toEqual(whole.toJSON());
    const big = new Sketch();
    big.add(0.002, 3_000_000_000);
    big.add(1e6, 1);
    expect(decodeSketch(encodeSketch(big)).toJSON()).toEqual(big.toJSON());
    expect(decodeSketch(encodeSketch(new Sketch())).toJSON()).toEqual({ z: 0, o: 0, c: [] });
  });

  it("counts zero, negative and NaN values in the zero bucket; an empty sketch has no quantile", () => {
    const s = new Sketch();
    expect(s.quantile(0.5)).toBeNull();
    s.add(0);
    s.add(-1);
    s.add(Number.NaN);
    s.add(10);
    expect(s.count).toBe(4);
    expect(s.quantile(0.5)).toBe(0);
    expect(Math.abs((s.quantile(1) as number) - 10) / 10).toBeLessThanOrEqual(ALPHA);
    expect(Sketch.from(null).toJSON()).toEqual({ z: 0, o: 0, c: [] });
  });
});
