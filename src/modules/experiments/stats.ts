/**
 * The significance tests of experiment results (docs/experiments.md): Welch's t-test for mean
 * ratings, the pooled two-proportion z-test for success rates, and for robot-assigned experiments
 * (the robot is the unit) a cluster-robust t-test for both; all two-sided. Written here (no
 * statistics dependency): the normal CDF from a Chebyshev-fitted erfc (fractional error < 1.2e-7),
 * the Student t CDF from the regularized incomplete beta function (Lentz's continued fraction).
 */

/** erfc(x) with fractional error below 1.2e-7 everywhere (Numerical Recipes 6.2, erfcc). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** P(Z <= z) for a standard normal Z. */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const xx = x - 1;
  let a = c[0] as number;
  const t = xx + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] as number) / (xx + i);
  return 0.5 * Math.log(2 * Math.PI) + (xx + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularized incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  // The fraction converges fast for x < (a+1)/(a+b+2); otherwise use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** Summary of one sample: size, mean and sample variance (n - 1). */
export interface SampleSummary {
  readonly n: number;
  readonly mean: number;
  readonly variance: number;
}

export interface TestResult {
  readonly test: string;
  readonly statistic: number;
  /** Welch: the Welch–Satterthwaite degrees of freedom; z-test: null. */
  readonly df: number | null;
  readonly p_value: number;
}

/**
 * Welch's unequal-variances t-test of mean(b) - mean(a), two-sided. Null when either sample has
 * fewer than 2 values or both variances are 0 (no spread: the t statistic is undefined).
 */
export function welchTTest(a: SampleSummary, b: SampleSummary): TestResult | null {
  if (a.n < 2 || b.n < 2) return null;
  const va = a.variance / a.n;
  const vb = b.variance / b.n;
  const se2 = va + vb;
  if (!(se2 > 0)) return null;
  const t = (b.mean - a.mean) / Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1));
  // From the lower tail itself: 1 - CDF(|t|) would round a small p-value to 0.
  const p = 2 * studentTCdf(-Math.abs(t), df);
  return { test: "welch_t", statistic: t, df, p_value: Math.min(1, Math.max(0, p)) };
}

/**
 * The pooled two-proportion z-test of p(b) - p(a), two-sided: z = (p_b - p_a) / sqrt(p(1-p)(1/n_a + 1/n_b))
 * with p the pooled proportion. Null when a sample is empty or the pooled proportion is 0 or 1.
 */
export function twoProportionZTest(
  a: { readonly n: number; readonly successes: number },
  b: { readonly n: number; readonly successes: number },
): TestResult | null {
  if (a.n === 0 || b.n === 0) return null;
  const pooled = (a.successes + b.successes) / (a.n + b.n);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n));
  if (!(se > 0)) return null;
  const z = (b.successes / b.n - a.successes / a.n) / se;
  const p = 2 * normalCdf(-Math.abs(z));
  return { test: "two_proportion_z", statistic: z, df: null, p_value: Math.min(1, Math.max(0, p)) };
}

/**
 * One sample grouped by the unit that was randomized (a robot): k units, unit i holding m_i
 * values with sum S_i. Only these sums are needed: N = Σm_i, ΣS_i, ΣS_i², ΣS_i·m_i, Σm_i².
 */
export interface ClusteredSample {
  /** k: units (robots) with at least one value. */
  readonly units: number;
  /** N: values over all units. */
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
  readonly sumCross: number;
  readonly countSq: number;
}

/**
 * The mean of a clustered sample (ΣS_i / N, every value weighted alike) and the variance of that
 * mean by the cluster-robust (ratio estimator, CR1) formula
 *   V = k / (k - 1) · Σ(S_i − mean·m_i)² / N²,
 * which lets the values of one unit be correlated. With one value per unit it is s² / k, the
 * variance Welch's test uses.
 */
export function clusteredMean(s: ClusteredSample): { mean: number; variance: number } | null {
  if (s.units < 2 || s.n === 0) return null;
  const mean = s.sum / s.n;
  const squares = Math.max(0, s.sumSq - 2 * mean * s.sumCross + mean * mean * s.countSq);
  return { mean, variance: ((s.units / (s.units - 1)) * squares) / (s.n * s.n) };
}

/**
 * Difference of the means of two clustered samples, mean(b) − mean(a), two-sided: t = Δ / sqrt(V_a + V_b)
 * against Student's t with Welch–Satterthwaite degrees of freedom counted in units
 * (df = (V_a + V_b)² / (V_a²/(k_a − 1) + V_b²/(k_b − 1))). With one value per unit this is
 * Welch's t-test exactly. Null below two units a side or without spread between units.
 */
export function clusterRobustTTest(a: ClusteredSample, b: ClusteredSample): TestResult | null {
  const ma = clusteredMean(a);
  const mb = clusteredMean(b);
  if (ma === null || mb === null) return null;
  const se2 = ma.variance + mb.variance;
  if (!(se2 > 0)) return null;
  const t = (mb.mean - ma.mean) / Math.sqrt(se2);
  const df = (se2 * se2) / ((ma.variance * ma.variance) / (a.units - 1) + (mb.variance * mb.variance) / (b.units - 1));
  const p = 2 * studentTCdf(-Math.abs(t), df);
  return { test: "cluster_robust_t", statistic: t, df, p_value: Math.min(1, Math.max(0, p)) };
}
