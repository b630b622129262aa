import { errors } from "../../platform/errors.ts";

/**
 * OpenVLA action tokenization (openvla/openvla prismatic/vla/action_tokenizer.py and
 * modeling_prismatic.py), re-implemented from the facts in docs/models.md. All arithmetic in
 * float64, as the reference does.
 *
 * - 256 bin edges evenly spaced on [-1, 1]; 255 bin centres.
 * - Action tokens are the last 256 ids of a 32000-token vocabulary: 31744..31999.
 * - decode(t) = centre[clip(32000 - t - 1, 0, 254)]: the highest id is the lowest value.
 * - The reference maps any id to a value; we reject ids outside the action range instead.
 */
export const VOCAB_SIZE = 32000;
export const N_BINS = 256;
export const MIN_ACTION_TOKEN = VOCAB_SIZE - N_BINS; // 31744
export const MAX_ACTION_TOKEN = VOCAB_SIZE - 1; // 31999

/** numpy.linspace(-1, 1, 256): start + i * step, with the last point set exactly to stop. */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

export const BIN_EDGES: Float64Array = linspace(-1, 1, N_BINS);
export const BIN_CENTERS: Float64Array = (() => {
  const c = new Float64Array(N_BINS - 1);
  for (let i = 0; i < N_BINS - 1; i++) c[i] = ((BIN_EDGES[i] as number) + (BIN_EDGES[i + 1] as number)) / 2;
  return c;
})();

export function isActionToken(t: number): boolean {
  return Number.isInteger(t) && t >= MIN_ACTION_TOKEN && t <= MAX_ACTION_TOKEN;
}

/** Token id -> normalized value in [-1, 1]. Throws invalid_model_output for a non-action id. */
export function decodeToken(t: number): number {
  if (!isActionToken(t)) {
    throw errors.invalidModelOutput(
      `Model produced token id ${String(t)}, outside the action range ${MIN_ACTION_TOKEN}..${MAX_ACTION_TOKEN}.`,
    );
  }
  const i = Math.min(Math.max(VOCAB_SIZE - t - 1, 0), N_BINS - 2);
  return BIN_CENTERS[i] as number;
}

export function decodeTokens(tokens: ArrayLike<number>): number[] {
  return Array.from(tokens, decodeToken);
}

/** numpy.digitize(a, edges) for increasing edges: the number of edges <= a. */
function digitize(a: number): number {
  let lo = 0;
  let hi = N_BINS;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((BIN_EDGES[mid] as number) <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Normalized value -> token id (tests and the mock backend): clip to [-1, 1], then 32000 - digitize. */
export function encodeValue(a: number): number {
  if (!Number.isFinite(a)) throw new RangeError(`cannot encode non-finite value ${a}`);
  return VOCAB_SIZE - digitize(Math.min(1, Math.max(-1, a)));
}

export function encodeValues(values: ArrayLike<number>): number[] {
  return Array.from(values, encodeValue);
}

/** Per-dimension statistics used to undo the [-1, 1] normalization. */
export interface ActionNormStats {
  readonly q01: readonly number[];
  readonly q99: readonly number[];
  readonly min?: readonly number[] | undefined;
  readonly max?: readonly number[] | undefined;
  /** false = pass the normalized value through (absolute gripper). Absent = every dimension. */
  readonly mask?: readonly boolean[] | undefined;
}

export interface UnnormalizeOptions {
  /** BOUNDS_Q99 (OpenVLA default) uses q01/q99; BOUNDS uses min/max. */
  readonly mode?: "bounds_q99" | "bounds";
  /** OpenVLA-OFT adds 1e-8 to the range; OpenVLA does not (0). */
  readonly epsilon?: number;
}

/**
 * action = 0.5 * (normalized + 1) * (high - low + epsilon) + low where mask is true,
 * normalized unchanged where it is false. Non-finite inputs or outputs are errors.
 */
export function unnormalize(
  normalized: readonly number[],
  stats: ActionNormStats,
  options: UnnormalizeOptions = {},
): number[] {
  const mode = options.mode ?? "bounds_q99";
  const eps = options.epsilon ?? 0;
  const low = mode === "bounds" ? stats.min : stats.q01;
  const high = mode === "bounds" ? stats.max : stats.q99;
  if (low === undefined || high === undefined) {
    throw errors.invalidModelOutput(`Dataset statistics lack ${mode === "bounds" ? "min/max" : "q01/q99"}.`);
  }
  if (normalized.length !== low.length) {
    throw errors.invalidModelOutput(
      `Model produced ${normalized.length} action dimensions; the statistics describe ${low.length}.`,
    );
  }
  return normalized.map((x, d) => {
    if (!Number.isFinite(x)) throw errors.invalidModelOutput(`Model produced a non-finite value at dimension ${d}.`);
    if (stats.mask !== undefined && stats.mask[d] === false) return x;
    const lo = low[d] as number;
    const hi = high[d] as number;
    const v = 0.5 * (x + 1) * (hi - lo + eps) + lo;
    if (!Number.isFinite(v)) throw errors.invalidModelOutput(`Un-normalized action is non-finite at dimension ${d}.`);
    return v;
  });
}

/** Inverse of unnormalize for masked dimensions (tests, mock): clip is left to encodeValue. */
export function normalize(
  action: readonly number[],
  stats: ActionNormStats,
  options: UnnormalizeOptions = {},
): number[] {
  const mode = options.mode ?? "bounds_q99";
  const eps = options.epsilon ?? 0;
  const low = (mode === "bounds" ? stats.min : stats.q01) ?? [];
  const high = (mode === "bounds" ? stats.max : stats.q99) ?? [];
  return action.map((a, d) => {
    if (stats.mask !== undefined && stats.mask[d] === false) return a;
    const lo = low[d] as number;
    const hi = high[d] as number;
    return (2 * (a - lo)) / (hi - lo + eps) - 1;
  });
}

/** Tokens -> un-normalized action: the full OpenVLA decode. */
export function decodeAction(
  tokens: ArrayLike<number>,
  stats: ActionNormStats,
  options: UnnormalizeOptions = {},
): number[] {
  return unnormalize(decodeTokens(tokens), stats, options);
}
