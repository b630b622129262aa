import { type EpisodeResult, type EpisodeSetup, type Policy, runEpisode, setupEpisode } from "./episode.ts";
import { writeGif } from "./gif.ts";
import type { CallRecord } from "./server-policy.ts";
import type { TaskKind } from "./tasks.ts";

/**
 * Runs several episodes with one policy (the expert, or a server through serverPolicy) and sums
 * them up: success rate, steps, latency percentiles and safety verdicts, and a GIF of the first.
 */

export type LoopOptions = {
  episodes: number;
  /** Seeds seedStart .. seedStart + episodes - 1 (demonstrations use 10000 and up: keep below). */
  seedStart?: number;
  kind?: TaskKind;
  instruction?: string;
  paraphrase?: boolean;
  noise?: number;
  lighting?: boolean;
  maxSteps?: number;
  /** Write the first episode as an animated GIF here. */
  gif?: string;
  onEpisode?: (result: EpisodeResult, index: number) => void;
  /** Before each episode (open a stream, set a safety profile). */
  beforeEpisode?: (setup: EpisodeSetup) => Promise<void>;
  /** After each episode, before onEpisode (close the stream, send feedback, check the workspace). */
  afterEpisode?: (result: EpisodeResult) => Promise<void>;
};

export type LoopReport = {
  episodes: { seed: number; instruction: string; success: boolean; steps: number }[];
  successRate: number;
  meanSteps: number;
  /** Client round trips (ms), when the policy records calls. */
  latency: { p50: number; p99: number; mean: number; n: number } | null;
  serverLatency: { p50: number; p99: number; n: number } | null;
  /** Count of each safety verdict (`pass`, `clamped`, `rejected`, ...). */
  safety: Record<string, number>;
  gif: string | null;
};

/** Nearest-rank percentile of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil(p * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] as number;
}

export async function runEpisodes(
  policy: Policy,
  options: LoopOptions,
  calls?: readonly CallRecord[],
): Promise<LoopReport> {
  const seedStart = options.seedStart ?? 0;
  const episodes: LoopReport["episodes"] = [];
  let gif: string | null = null;
  for (let i = 0; i < options.episodes; i++) {
    const seed = seedStart + i;
    const setup = setupEpisode(seed, {
      ...(options.instruction !== undefined ? { instruction: options.instruction } : {}),
      ...(options.kind ? { kind: options.kind } : {}),
      ...(options.paraphrase ? { paraphrase: true } : {}),
    });
    const keepFrames = i === 0 && options.gif !== undefined;
    await options.beforeEpisode?.(setup);
    const result = await runEpisode(setup, policy, {
      keepFrames,
      ...(options.noise ? { noise: options.noise } : {}),
      ...(options.lighting ? { lighting: true } : {}),
      ...(options.maxSteps !== undefined ? { maxSteps: options.maxSteps } : {}),
    });
    await options.afterEpisode?.(result);
    if (keepFrames && options.gif) {
      writeGif(options.gif, result.frames, { delayMs: 200 });
      gif = options.gif;
    }
    episodes.push({ seed, instruction: result.instruction, success: result.success, steps: result.steps });
    options.onEpisode?.(result, i);
  }
  const successes = episodes.filter((e) => e.success).length;
  const latencies = (calls ?? []).map((c) => c.latencyMs);
  const server = (calls ?? []).flatMap((c) => (c.serverMs === null ? [] : [c.serverMs]));
  const safety: Record<string, number> = {};
  for (const c of calls ?? []) safety[c.safety] = (safety[c.safety] ?? 0) + 1;
  return {
    episodes,
    successRate: episodes.length === 0 ? 0 : successes / episodes.length,
    meanSteps: episodes.length === 0 ? 0 : episodes.reduce((a, e) => a + e.steps, 0) / episodes.length,
    latency:
      latencies.length === 0
        ? null
        : {
            p50: percentile(latencies, 0.5),
            p99: percentile(latencies, 0.99),
            mean: latencies.reduce((a, b) => a + b, 0) / latencies.length,
            n: latencies.length,
          },
    serverLatency:
      server.length === 0 ? null : { p50: percentile(server, 0.5), p99: percentile(server, 0.99), n: server.length },
    safety,
    gif,
  };
}
