import { describe, expect, it } from "vitest";
import {
  type ClusteredSample,
  clusterRobustTTest,
  incompleteBeta,
  logGamma,
  normalCdf,
  studentTCdf,
  twoProportionZTest,
  welchTTest,
} from "./stats.ts";

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

  /** The sums of units given as lists of values. */
  const clustered = (units: number[][]): ClusteredSample => {
    const sums = units.map((u) => u.reduce((a, x) => a + x, 0));
    return {
      units: units.length,
      n: units.reduce((a, u) => a + u.length, 0),
      sum: sums.reduce((a, x) => a + x, 0),
      sumSq: sums.reduce((a, x) => a + x * x, 0),
      sumCross: sums.reduce((a, x, i) => a + x * (units[i] as number[]).length, 0),
      countSq: units.reduce((a, u) => a + u.length * u.length, 0),
    };
  };

  it("cluster-robust t with one value per unit is Welch's t-test exactly", () => {
    const a = [3, 2, 4, 3, 2, 3];
    const b = [5, 4, 4, 3, 5];
    const r = clusterRobustTTest(clustered(a.map((x) => [x])), clustered(b.map((x) => [x])));
    const w = welchTTest(summary(a), summary(b));
    expect(r?.test).toBe("cluster_robust_t");
    expect(r?.statistic).toBeCloseTo(w?.statistic as number, 12);
    expect(r?.df).toBeCloseTo(w?.df as number, 9);
    expect(r?.p_value).toBeCloseTo(w?.p_value as number, 12);
  });

  it("cluster-robust t on unequal units, by hand: t = 3/sqrt(8/9), df 2, closed-form t(2) tail", () => {
    // a: {1, 2}, {3}: mean 2, V = 2/1 * ((3 - 4)^2 + (3 - 2)^2) / 3^2 = 4/9; b: {4}, {5, 6}: mean 5, V = 4/9.
    const r = clusterRobustTTest(clustered([[1, 2], [3]]), clustered([[4], [5, 6]]));
    const t = 3 / Math.sqrt(8 / 9);
    expect(r?.statistic).toBeCloseTo(t, 12);
    expect(r?.df).toBeCloseTo(2, 12);
    // Student t with 2 df: P(T <= -t) = 0.5 - t / (2 sqrt(2 + t^2)).
    expect(r?.p_value).toBeCloseTo(2 * (0.5 - t / (2 * Math.sqrt(2 + t * t))), 9);
  });

  it("robots whose inferences agree: the cluster test counts robots, the per-inference tests overstate", () => {
    // Three robots a side, ten alike ratings each: robot means 2, 4, 3 vs 3, 5, 4.
    const ten = (x: number) => Array.from({ length: 10 }, () => x);
    const a = [ten(2), ten(4), ten(3)];
    const b = [ten(3), ten(5), ten(4)];
    const naive = welchTTest(summary(a.flat()), summary(b.flat()));
    const robust = clusterRobustTTest(clustered(a), clustered(b));
    expect(naive?.p_value).toBeLessThan(0.001);
    // Equal units: Welch on the robot means, SciPy ttest_ind([2, 4, 3], [3, 5, 4], equal_var=False): t 1.2247449, df 4.
    const means = welchTTest(summary([2, 4, 3]), summary([3, 5, 4]));
    expect(robust?.statistic).toBeCloseTo(1.224744871391589, 9);
    expect(robust?.df).toBeCloseTo(4, 9);
    expect(robust?.p_value).toBeCloseTo(means?.p_value as number, 9);
    expect(robust?.p_value).toBeGreaterThan(0.2);
  });

  it("cluster-robust t is undefined below two units a side or without spread between units", () => {
    expect(clusterRobustTTest(clustered([[1, 2, 3]]), clustered([[4], [5]]))).toBeNull();
    expect(clusterRobustTTest(clustered([[4, 4], [4]]), clustered([[4], [4, 4]]))).toBeNull();
  });
});
