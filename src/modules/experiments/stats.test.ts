import { describe, expect, it } from "vitest";
import { incompleteBeta, logGamma, normalCdf, studentTCdf, twoProportionZTest, welchTTest } from "./stats.ts";

// Reference values from SciPy 1.17 (scipy.stats.norm.cdf, scipy.stats.t.cdf, scipy.special.betainc,
// scipy.stats.ttest_ind(equal_var=False)).
describe("distribution functions", () => {
  it("normal CDF", () => {
    expect(normalCdf(1.96)).toBeCloseTo(0.9750021048517795, 6);
    expect(normalCdf(-2.5)).toBeCloseTo(0.006209665325776132, 6);
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
  });

  it("log gamma and the regularized incomplete beta", () => {
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 10);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 10);
    expect(incompleteBeta(0.3, 2.5, 3.5)).toBeCloseTo(0.29675298929566646, 9);
    expect(incompleteBeta(0, 2, 3)).toBe(0);
    expect(incompleteBeta(1, 2, 3)).toBe(1);
  });

  it("Student t CDF, whole and fractional degrees of freedom", () => {
    expect(studentTCdf(2.0, 10)).toBeCloseTo(0.9633059826146299, 9);
    expect(studentTCdf(-1.5, 3.7)).toBeCloseTo(0.10679908460100675, 9);
    expect(studentTCdf(0.3, 250)).toBeCloseTo(0.6177867754919752, 9);
    // The textbook critical values: two-sided p = 0.05.
    expect(2 * (1 - studentTCdf(2.228138851986274, 10))).toBeCloseTo(0.05, 9);
    expect(2 * (1 - studentTCdf(12.706204736174698, 1))).toBeCloseTo(0.05, 9);
  });
});

describe("tests", () => {
  const summary = (xs: number[]) => {
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1);
    return { n: xs.length, mean, variance };
  };

  it("Welch's t-test matches SciPy's ttest_ind(equal_var=False)", () => {
    const r = welchTTest(summary([3, 2, 4, 3, 2, 3]), summary([5, 4, 4, 3, 5]));
    expect(r?.test).toBe("welch_t");
    expect(r?.statistic).toBeCloseTo(2.8225564023682086, 9);
    expect(r?.df).toBeCloseTo(8.22330993719985, 9);
    expect(r?.p_value).toBeCloseTo(0.02179991392841313, 8);
  });

  it("Welch's t-test is undefined below two values or without spread", () => {
    expect(welchTTest({ n: 1, mean: 4, variance: 0 }, { n: 5, mean: 3, variance: 1 })).toBeNull();
    expect(welchTTest({ n: 3, mean: 4, variance: 0 }, { n: 5, mean: 4, variance: 0 })).toBeNull();
  });

  it("two-proportion z-test: 45/100 vs 60/100", () => {
    const r = twoProportionZTest({ n: 100, successes: 45 }, { n: 100, successes: 60 });
    expect(r?.test).toBe("two_proportion_z");
    expect(r?.statistic).toBeCloseTo(2.1239769762143657, 9);
    expect(r?.p_value).toBeCloseTo(0.03367206885634588, 6);
    expect(twoProportionZTest({ n: 0, successes: 0 }, { n: 5, successes: 2 })).toBeNull();
    expect(twoProportionZTest({ n: 4, successes: 4 }, { n: 5, successes: 5 })).toBeNull();
  });

  it("a strong effect has a small p-value, not 0 (computed from the tail, not 1 - CDF)", () => {
    // SciPy: ttest_ind_from_stats(2, sqrt(0.5), 100, 4, sqrt(0.5), 100, equal_var=False) -> p 2.0689e-49.
    const t = welchTTest({ n: 100, mean: 2, variance: 0.5 }, { n: 100, mean: 4, variance: 0.5 });
    expect(t?.p_value).toBeGreaterThan(0);
    expect((t?.p_value as number) / 2.068940257467799e-49).toBeCloseTo(1, 4);
    // SciPy: 10/100 vs 90/100, z 11.3137085, 2 * norm.sf(z) -> 1.1224e-29 (erfc is good to 1.2e-7 relative).
    const z = twoProportionZTest({ n: 100, successes: 10 }, { n: 100, successes: 90 });
    expect(z?.statistic).toBeCloseTo(11.313708498984761, 9);
    expect((z?.p_value as number) / 1.1224297172982608e-29).toBeCloseTo(1, 5);
  });
});
