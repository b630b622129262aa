import { readFileSync } from "node:fs";
import { errors } from "../../platform/errors.ts";
import type { ActionNormStats } from "./action-codec.ts";

/**
 * `dataset_statistics.json` as OpenVLA ships it (also `norm_stats` in model configs):
 * `{ "<unnorm_key>": { "action": {mean,std,min,max,q01,q99,mask?}, "proprio"?: {...},
 * "num_transitions"?: N, "num_trajectories"?: M }, ... }`. The action dimension is len(q01).
 */
export interface ArrayStats {
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  readonly min?: readonly number[];
  readonly max?: readonly number[];
  readonly q01: readonly number[];
  readonly q99: readonly number[];
  readonly mask?: readonly boolean[];
}

export interface UnnormEntry {
  readonly action: ArrayStats;
  readonly proprio?: ArrayStats;
  readonly numTransitions?: number;
  readonly numTrajectories?: number;
}

export interface DatasetStatistics {
  readonly keys: readonly string[];
  readonly entries: ReadonlyMap<string, UnnormEntry>;
}

export class StatisticsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StatisticsError";
  }
}

const MAX_DIM = 64;

function numberArray(v: unknown, where: string, optional: boolean): number[] | undefined {
  if (v === undefined && optional) return undefined;
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_DIM) {
    throw new StatisticsError(`${where}: expected an array of 1..${MAX_DIM} numbers`);
  }
  return v.map((x, i) => {
    if (typeof x !== "number" || !Number.isFinite(x)) throw new StatisticsError(`${where}[${i}]: not a finite number`);
    return x;
  });
}

function parseArrayStats(v: unknown, where: string, requireQuantiles: boolean): ArrayStats | undefined {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    if (!requireQuantiles && v === undefined) return undefined;
    throw new StatisticsError(`${where}: expected an object`);
  }
  const o = v as Record<string, unknown>;
  const q01 = numberArray(o.q01, `${where}.q01`, !requireQuantiles);
  const q99 = numberArray(o.q99, `${where}.q99`, !requireQuantiles);
  if (q01 === undefined || q99 === undefined) return undefined;
  const dim = q01.length;
  const sameDim = (name: string, arr: readonly unknown[] | undefined) => {
    if (arr !== undefined && arr.length !== dim) {
      throw new StatisticsError(`${where}.${name}: length ${arr.length} differs from len(q01) = ${dim}`);
    }
  };
  const mean = numberArray(o.mean, `${where}.mean`, true);
  const std = numberArray(o.std, `${where}.std`, true);
  const min = numberArray(o.min, `${where}.min`, true);
  const max = numberArray(o.max, `${where}.max`, true);
  for (const [n, a] of [
    ["q99", q99],
    ["mean", mean],
    ["std", std],
    ["min", min],
    ["max", max],
  ] as const)
    sameDim(n, a);
  q01.forEach((lo, i) => {
    if ((q99[i] as number) < lo) throw new StatisticsError(`${where}: q99[${i}] < q01[${i}]`);
  });
  let mask: boolean[] | undefined;
  if (o.mask !== undefined) {
    if (!Array.isArray(o.mask) || !o.mask.every((b) => typeof b === "boolean")) {
      throw new StatisticsError(`${where}.mask: expected an array of booleans`);
    }
    mask = o.mask as boolean[];
    sameDim("mask", mask);
  }
  return {
    q01,
    q99,
    ...(mean ? { mean } : {}),
    ...(std ? { std } : {}),
    ...(min ? { min } : {}),
    ...(max ? { max } : {}),
    ...(mask ? { mask } : {}),
  };
}

/** Validates a parsed dataset_statistics document; `source` names it in error messages. */
export function parseDatasetStatistics(doc: unknown, source = "dataset_statistics"): DatasetStatistics {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new StatisticsError(`${source}: expected an object keyed by unnorm_key`);
  }
  const entries = new Map<string, UnnormEntry>();
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(key)) throw new StatisticsError(`${source}: invalid unnorm_key "${key}"`);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new StatisticsError(`${source}.${key}: expected an object`);
    }
    const v = value as Record<string, unknown>;
    const action = parseArrayStats(v.action, `${source}.${key}.action`, true) as ArrayStats;
    const proprio = parseArrayStats(v.proprio, `${source}.${key}.proprio`, false);
    const count = (name: string): number | undefined => {
      const n = v[name];
      if (n === undefined) return undefined;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
        throw new StatisticsError(`${source}.${key}.${name}: expected a non-negative integer`);
      }
      return n;
    };
    const numTransitions = count("num_transitions");
    const numTrajectories = count("num_trajectories");
    entries.set(key, {
      action,
      ...(proprio ? { proprio } : {}),
      ...(numTransitions === undefined ? {} : { numTransitions }),
      ...(numTrajectories === undefined ? {} : { numTrajectories }),
    });
  }
  if (entries.size === 0) throw new StatisticsError(`${source}: no unnorm_key entries`);
  return { keys: [...entries.keys()], entries };
}

export function loadDatasetStatistics(file: string): DatasetStatistics {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new StatisticsError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseDatasetStatistics(doc, file);
}

/** The action dimension of a key (len(q01)). */
export function actionDim(stats: DatasetStatistics, key: string): number {
  return stats.entries.get(key)?.action.q01.length ?? 0;
}

/**
 * Picks the statistics for a request. With one key the caller may omit it; with several the
 * model's default applies, and without a default the caller must name one (400 listing keys).
 */
export function selectUnnormKey(
  stats: DatasetStatistics,
  requested: string | undefined,
  defaultKey: string | undefined,
): { key: string; action: ActionNormStats } {
  const valid = stats.keys;
  let key = requested;
  if (key === undefined) {
    if (defaultKey !== undefined) key = defaultKey;
    else if (valid.length === 1) key = valid[0] as string;
    else {
      throw errors.invalidUnnormKey(
        `This model has ${valid.length} sets of dataset statistics; name one with unnorm_key: ${valid.join(", ")}.`,
        valid,
      );
    }
  }
  const entry = stats.entries.get(key);
  if (entry === undefined) {
    throw errors.invalidUnnormKey(`Unknown unnorm_key "${key}"; valid keys: ${valid.join(", ")}.`, valid);
  }
  return { key, action: entry.action };
}
