import type { DatasetStatistics } from "../models/dataset-statistics.ts";
import { severityFromExcess } from "./evaluator.ts";
import type { ClassifierContext, ClassifierResult, SafetyClassifier } from "./types.ts";

/** Per-dimension action statistics of one unnorm key (dataset). */
export interface ActionMoments {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

export interface OodOptions {
  /** unnorm key -> moments. */
  readonly stats: Readonly<Record<string, ActionMoments>> | ReadonlyMap<string, ActionMoments>;
  /** Flag a value more than k standard deviations from the mean (default 4). */
  readonly k?: number;
  /** Used when the context names no unnorm key (else: the only key when there is exactly one). */
  readonly defaultKey?: string;
}

const DIM_NAMES = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"];
/** Dimensions with a std below this carry no spread information and are not scored. */
const MIN_STD = 1e-9;

/**
 * Out-of-distribution detector: z = |a_i - mean_i| / std_i over every dimension of every step;
 * flagged when max z > k. Severity from the excess ratio max z / k - 1 (same thresholds as the rules);
 * risk = 0.5 * z / k up to k, then 0.5 + 0.5 * (z / k - 1), capped at 1 (so risk 0.5 is exactly k σ).
 */
export class OodClassifier implements SafetyClassifier {
  readonly name = "ood";
  private readonly stats: ReadonlyMap<string, ActionMoments>;
  private readonly k: number;
  private readonly defaultKey: string | undefined;

  constructor(options: OodOptions) {
    this.stats = options.stats instanceof Map ? options.stats : new Map(Object.entries(options.stats));
    this.k = options.k ?? 4;
    if (!(this.k > 0) || !Number.isFinite(this.k)) throw new Error("OOD k must be a positive number");
    const keys = [...this.stats.keys()];
    this.defaultKey = options.defaultKey ?? (keys.length === 1 ? keys[0] : undefined);
  }

  classify(ctx: ClassifierContext): ClassifierResult {
    const key = ctx.unnormKey ?? this.defaultKey;
    const m = key === undefined ? undefined : this.stats.get(key);
    if (m === undefined) {
      return {
        risk: 0,
        label: "not_evaluated",
        reasons: [],
        skipped: `no dataset statistics for unnorm key ${key ?? "(none)"}`,
      };
    }
    let maxZ = 0;
    let maxDim = -1;
    let maxStep = 0;
    for (let s = 0; s < ctx.steps.length; s++) {
      const a = ctx.steps[s] as readonly number[];
      const n = Math.min(a.length, m.mean.length, m.std.length);
      for (let i = 0; i < n; i++) {
        const sd = m.std[i] as number;
        if (!(sd > MIN_STD)) continue;
        const z = Math.abs((a[i] as number) - (m.mean[i] as number)) / sd;
        if (z > maxZ) {
          maxZ = z;
          maxDim = i;
          maxStep = s;
        }
      }
    }
    const k = this.k;
    const risk = maxZ <= k ? (0.5 * maxZ) / k : Math.min(1, 0.5 + 0.5 * (maxZ / k - 1));
    if (maxZ <= k) return { risk, label: "in_distribution", reasons: [], measured: maxZ, limit: k };
    const dim = DIM_NAMES[maxDim] ?? `dim ${maxDim}`;
    return {
      risk,
      label: "out_of_distribution",
      reasons: [
        `${dim}${ctx.steps.length > 1 ? ` at step ${maxStep}` : ""} is ${maxZ.toFixed(1)} std from the ${key} mean (k = ${k})`,
      ],
      severity: severityFromExcess(maxZ / k - 1),
      measured: maxZ,
      limit: k,
    };
  }
}

/** Moments per unnorm key from parsed dataset statistics (keys without mean/std are left out). */
export function momentsFromDatasetStatistics(ds: DatasetStatistics): Map<string, ActionMoments> {
  const out = new Map<string, ActionMoments>();
  for (const [key, entry] of ds.entries) {
    const { mean, std } = entry.action;
    if (mean !== undefined && std !== undefined) out.set(key, { mean, std });
  }
  return out;
}
