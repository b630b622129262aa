/**
 * Temporal post-processing of one session's actions, applied before safety evaluation so
 * safety judges what is actually sent. Pure and framework-free; docs/streaming.md has the math.
 *
 * - Chunk aggregation (models with action chunks, reference section 8): step k of the chunk
 *   answering frame `seq` s is the action for timestep s + k. Chunks overlap when a new frame
 *   arrives before the old chunk is used up; each timestep is then blended:
 *   `latest` takes the new value, `weighted` 0.3 old + 0.7 new (LeRobot's default), `average`
 *   the mean of every chunk that predicted that timestep.
 * - Smoothing of the continuous action (the first step): `ema` y = a x + (1 - a) y_prev with
 *   y_prev the previous action sent; `moving_average` the mean of the last `window` actions
 *   (before smoothing). The gripper (the last dimension) is left alone unless `gripper: true`.
 */

export type SmoothingMethod = "none" | "ema" | "moving_average";
export type ChunkAggregation = "latest" | "weighted" | "average";

export interface SmoothingOptions {
  readonly method: SmoothingMethod;
  /** EMA weight of the new action, (0, 1]. */
  readonly alpha: number;
  /** Moving-average window in actions, >= 1. */
  readonly window: number;
  /** Smooth the gripper dimension too. */
  readonly gripper: boolean;
}

export const DEFAULT_SMOOTHING: SmoothingOptions = { method: "none", alpha: 0.5, window: 3, gripper: false };

/** LeRobot's default blend: 0.3 of the old prediction, 0.7 of the new one. */
export const WEIGHTED_OLD = 0.3;
export const WEIGHTED_NEW = 0.7;

type Vec = readonly number[];

/** One action smoothed against the history; dims not smoothed keep the new value. */
export function smoothAction(
  action: Vec,
  options: SmoothingOptions,
  previousSent: Vec | null,
  history: readonly Vec[],
): number[] {
  const out = [...action];
  if (options.method === "none") return out;
  const last = action.length - 1;
  for (let i = 0; i < action.length; i++) {
    if (i === last && !options.gripper) continue;
    const x = action[i] as number;
    if (options.method === "ema") {
      const prev = previousSent?.[i];
      out[i] = prev === undefined ? x : options.alpha * x + (1 - options.alpha) * prev;
    } else {
      // history holds earlier raw actions, oldest first; the window includes this one.
      const recent = history.slice(Math.max(0, history.length - (options.window - 1)));
      let sum = x;
      let n = 1;
      for (const h of recent) {
        const v = h[i];
        if (v === undefined) continue;
        sum += v;
        n++;
      }
      out[i] = sum / n;
    }
  }
  return out;
}

/**
 * The blended plan of one session: for each future timestep, the aggregated action and how
 * many chunks predicted it.
 */
export class ChunkAggregator {
  private readonly mode: ChunkAggregation;
  private readonly plan = new Map<number, { value: number[]; count: number }>();

  constructor(mode: ChunkAggregation) {
    this.mode = mode;
  }

  /** Blends the chunk answering frame `seq` into the plan; returns the plan for seq..seq+H-1. */
  add(seq: number, chunk: readonly Vec[]): number[][] {
    for (const t of [...this.plan.keys()]) if (t < seq) this.plan.delete(t);
    const out: number[][] = [];
    chunk.forEach((step, k) => {
      const t = seq + k;
      const old = this.plan.get(t);
      let value: number[];
      let count = 1;
      if (old === undefined || old.value.length !== step.length || this.mode === "latest") value = [...step];
      else if (this.mode === "weighted")
        value = step.map((x, i) => WEIGHTED_OLD * (old.value[i] as number) + WEIGHTED_NEW * x);
      else {
        count = old.count + 1;
        value = step.map((x, i) => ((old.value[i] as number) * old.count + x) / count);
      }
      this.plan.set(t, { value, count });
      out.push(value);
    });
    return out;
  }

  get size(): number {
    return this.plan.size;
  }
}

/** Per-session post-processing state: the chunk plan and the raw-action history for smoothing. */
export class SessionSmoother {
  private readonly options: SmoothingOptions;
  private readonly aggregator: ChunkAggregator;
  private readonly history: Vec[] = [];

  constructor(options: SmoothingOptions, aggregation: ChunkAggregation) {
    this.options = options;
    this.aggregator = new ChunkAggregator(aggregation);
  }

  /**
   * Takes the decoded action (and chunk) of frame `seq` and returns what safety should judge:
   * the chunk blended with earlier chunks, its first step smoothed against `previousSent`.
   */
  apply(
    seq: number,
    decoded: { readonly action: Vec; readonly actionChunk?: readonly Vec[] | undefined },
    previousSent: Vec | null,
  ): { action: number[]; actionChunk?: number[][] } {
    const chunk = decoded.actionChunk === undefined ? undefined : this.aggregator.add(seq, decoded.actionChunk);
    const raw = chunk?.[0] ?? [...decoded.action];
    const action = smoothAction(raw, this.options, previousSent, this.history);
    this.history.push(raw);
    if (this.history.length > Math.max(1, this.options.window)) this.history.shift();
    if (chunk === undefined) return { action };
    chunk[0] = action;
    return { action, actionChunk: chunk };
  }
}
