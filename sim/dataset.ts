import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expertPolicy, runEpisode, setupEpisode } from "./episode.ts";
import { FUNNEL } from "./expert.ts";
import { decodeNpy, encodeNpy } from "./npy.ts";
import { FRAME_SIZE, type Frame } from "./render.ts";
import { createRng, deriveSeed } from "./rng.ts";
import {
  type Action,
  findBlock,
  GRASP_HEIGHT_TOLERANCE,
  GRIPPER_CLOSED,
  isOpen,
  MAX_STEP,
  type Scene,
} from "./scene.ts";
import { TASK_KINDS, type Task, type TaskKind } from "./tasks.ts";

/**
 * Expert demonstrations for behaviour cloning, written as NumPy files plus JSON metadata
 * (the exact format is in docs/sim.md), and OpenVLA-style dataset statistics.
 */

export const DATASET_FORMAT = "vla-sim-demos/1";
/** The unnorm_key the statistics are filed under. */
export const UNNORM_KEY = "sim_tabletop";
/** Un-normalize x, y, z and the rotations; the gripper (0/1) passes through (as bridge_orig). */
export const ACTION_MASK = [true, true, true, true, true, true, false] as const;

/** Averages `factor` x `factor` pixel blocks (exactly torch's AvgPool2d(factor)), rounded to uint8. */
export function downsample(frame: Frame, factor: number): Frame {
  if (factor === 1) return frame;
  if (frame.width % factor !== 0 || frame.height % factor !== 0) {
    throw new Error(`factor ${factor} does not divide ${frame.width}x${frame.height}`);
  }
  const width = frame.width / factor;
  const height = frame.height / factor;
  const sums = new Uint32Array(width * 3);
  const data = new Uint8Array(width * height * 3);
  const area = factor * factor;
  for (let row = 0; row < height; row++) {
    sums.fill(0);
    for (let dy = 0; dy < factor; dy++) {
      const src = (row * factor + dy) * frame.width * 3;
      for (let x = 0; x < frame.width; x++) {
        const o = ((x / factor) | 0) * 3;
        const i = src + x * 3;
        sums[o] = (sums[o] as number) + (frame.data[i] as number);
        sums[o + 1] = (sums[o + 1] as number) + (frame.data[i + 1] as number);
        sums[o + 2] = (sums[o + 2] as number) + (frame.data[i + 2] as number);
      }
    }
    for (let k = 0; k < width * 3; k++) data[row * width * 3 + k] = Math.round((sums[k] as number) / area);
  }
  return { width, height, data };
}

/** numpy.quantile's default (linear interpolation between closest ranks) on sorted values. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new Error("quantile of nothing");
  const pos = q * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  const a = sorted[lo] as number;
  return a + ((sorted[hi] as number) - a) * (pos - lo);
}

export type Statistics = {
  mean: number[];
  std: number[];
  min: number[];
  max: number[];
  q01: number[];
  q99: number[];
};

/** Per-dimension statistics of rows (float64; std with ddof 0 like numpy.std). */
export function statistics(rows: readonly (readonly number[])[]): Statistics {
  const dims = rows[0]?.length ?? 0;
  const out: Statistics = { mean: [], std: [], min: [], max: [], q01: [], q99: [] };
  for (let d = 0; d < dims; d++) {
    const values = Float64Array.from(rows, (r) => r[d] as number).sort();
    let sum = 0;
    for (const v of values) sum += v;
    const mean = sum / values.length;
    let squares = 0;
    for (const v of values) squares += (v - mean) ** 2;
    out.mean.push(mean);
    out.std.push(Math.sqrt(squares / values.length));
    out.min.push(values[0] as number);
    out.max.push(values[values.length - 1] as number);
    out.q01.push(quantileSorted(values, 0.01));
    out.q99.push(quantileSorted(values, 0.99));
  }
  return out;
}

/** `dataset_statistics.json` content in OpenVLA's layout. */
export function datasetStatistics(
  actions: readonly (readonly number[])[],
  proprio: readonly (readonly number[])[],
  trajectories: number,
) {
  return {
    [UNNORM_KEY]: {
      action: { ...statistics(actions), mask: [...ACTION_MASK] },
      proprio: statistics(proprio),
      num_transitions: actions.length,
      num_trajectories: trajectories,
    },
  };
}

export type DemoOptions = {
  out: string;
  /** Episodes per task kind. */
  episodes: number;
  seedStart?: number;
  kinds?: readonly TaskKind[];
  /** Stored frame side: 224 divided by an integer (224, 112, 56, 32, 28, ...). */
  size?: number;
  /** Draw instruction paraphrases (default true). */
  paraphrase?: boolean;
  /** Sensor noise sigma in 0..255 units (0 = none). */
  noise?: number;
  /** Random lighting per episode. */
  lighting?: boolean;
  /** DART-style perturbation: Gaussian noise (metres) added to the executed x/y/z, not to the label. */
  perturb?: number;
  /**
   * Recovery demonstrations: the probability that an episode executes one premature close (the
   * gripper shuts on nothing while the expert approaches its block, near it but too high to
   * grasp). The expert's recorded labels then show the recovery: open, back off upwards, approach
   * again.
   */
  earlyClose?: number;
  onEpisode?: (info: { index: number; total: number; success: boolean; steps: number }) => void;
};

export type EpisodeMeta = {
  index: number;
  seed: number;
  kind: TaskKind;
  colour: string;
  target: string | null;
  instruction: string;
  instruction_id: number;
  start: number;
  length: number;
  success: boolean;
};

export type DemoMetadata = {
  format: typeof DATASET_FORMAT;
  unnorm_key: string;
  frame_size: [number, number];
  source_frame_size: [number, number];
  downsample_factor: number;
  options: {
    seed_start: number;
    episodes_per_kind: number;
    kinds: TaskKind[];
    paraphrase: boolean;
    noise: number;
    lighting: boolean;
    perturb: number;
    early_close: number;
  };
  num_transitions: number;
  num_trajectories: number;
  skipped_failures: number;
  instructions: string[];
  episodes: EpisodeMeta[];
};

/**
 * Whether a premature close now would be a mistake worth recovering from: the gripper is open and
 * empty, the expert keeps it open, the TCP is near the block it is to pick (within twice the
 * funnel's radius) but too high for a close to grasp it even after a full step down.
 */
function prematureCloseWindow(scene: Scene, task: Task, expert: Action): boolean {
  if (scene.held >= 0 || !isOpen(scene.gripper) || !isOpen(expert[6] as number)) return false;
  const block = findBlock(scene, task.colour);
  if (block === undefined) return false;
  const horizontal = Math.hypot(scene.ee.x - block.pos.x, scene.ee.y - block.pos.y);
  return horizontal <= 2 * FUNNEL && scene.ee.z - block.pos.z > GRASP_HEIGHT_TOLERANCE + MAX_STEP;
}

/** Seed of episode `i` of kind number `k`: kinds interleave so every seed is used once. */
export function demoSeed(seedStart: number, i: number, k: number, kinds: number): number {
  return seedStart + i * kinds + k;
}

/** Runs the expert and writes frames.npy, actions.npy, states.npy, episodes.json and dataset_statistics.json. */
export async function writeDemos(options: DemoOptions): Promise<DemoMetadata> {
  const kinds = [...(options.kinds ?? TASK_KINDS)];
  const seedStart = options.seedStart ?? 10_000;
  const size = options.size ?? 56;
  const factor = FRAME_SIZE / size;
  if (!Number.isInteger(factor)) throw new Error(`size must divide ${FRAME_SIZE}`);
  const paraphrase = options.paraphrase ?? true;
  const frames: Uint8Array[] = [];
  const actions: number[][] = [];
  const states: number[][] = [];
  const instructions: string[] = [];
  const episodes: EpisodeMeta[] = [];
  let skipped = 0;
  const total = options.episodes * kinds.length;
  for (let i = 0; i < options.episodes; i++) {
    for (const [k, kind] of kinds.entries()) {
      const seed = demoSeed(seedStart, i, k, kinds.length);
      const setup = setupEpisode(seed, { kind, paraphrase });
      const rng = createRng(deriveSeed(seed, 5));
      const sigma = options.perturb ?? 0;
      // One premature close, at a random step of the approach, in this share of the episodes.
      let closeEarly = options.earlyClose ? rng.next() < options.earlyClose : false;
      const perturb =
        sigma > 0 || closeEarly
          ? (a: Action): Action => {
              const out = [...a];
              if (sigma > 0) for (let d = 0; d < 3; d++) out[d] = (out[d] as number) + rng.normal() * sigma;
              if (closeEarly && prematureCloseWindow(setup.scene, setup.task, a) && rng.next() < 0.5) {
                out[6] = GRIPPER_CLOSED;
                closeEarly = false;
              }
              return out;
            }
          : undefined;
      const result = await runEpisode(setup, expertPolicy, {
        ...(options.noise ? { noise: options.noise } : {}),
        ...(options.lighting ? { lighting: true } : {}),
        ...(perturb ? { perturb } : {}),
      });
      options.onEpisode?.({ index: episodes.length + skipped, total, success: result.success, steps: result.steps });
      if (!result.success) {
        skipped++;
        continue;
      }
      let instructionId = instructions.indexOf(result.instruction);
      if (instructionId < 0) instructionId = instructions.push(result.instruction) - 1;
      episodes.push({
        index: episodes.length,
        seed,
        kind,
        colour: result.task.colour,
        target: result.task.kind === "put_on" ? result.task.target : null,
        instruction: result.instruction,
        instruction_id: instructionId,
        start: actions.length,
        length: result.steps,
        success: result.success,
      });
      // frames has steps + 1 entries: the last (after the final action) is not a training sample.
      for (let s = 0; s < result.steps; s++) {
        frames.push(downsample(result.frames[s] as Frame, factor).data);
        actions.push(result.actions[s] as number[]);
        states.push((result.states[s] as { proprio: number[] }).proprio);
      }
    }
  }

  mkdirSync(options.out, { recursive: true });
  const n = actions.length;
  const frameBytes = new Uint8Array(n * size * size * 3);
  frames.forEach((f, i) => {
    frameBytes.set(f, i * size * size * 3);
  });
  writeFileSync(
    path.join(options.out, "frames.npy"),
    encodeNpy({ dtype: "uint8", shape: [n, size, size, 3], data: frameBytes }),
  );
  writeFileSync(
    path.join(options.out, "actions.npy"),
    encodeNpy({ dtype: "float32", shape: [n, 7], data: Float32Array.from(actions.flat()) }),
  );
  writeFileSync(
    path.join(options.out, "states.npy"),
    encodeNpy({ dtype: "float32", shape: [n, 7], data: Float32Array.from(states.flat()) }),
  );
  const metadata: DemoMetadata = {
    format: DATASET_FORMAT,
    unnorm_key: UNNORM_KEY,
    frame_size: [size, size],
    source_frame_size: [FRAME_SIZE, FRAME_SIZE],
    downsample_factor: factor,
    options: {
      seed_start: seedStart,
      episodes_per_kind: options.episodes,
      kinds,
      paraphrase,
      noise: options.noise ?? 0,
      lighting: options.lighting ?? false,
      perturb: options.perturb ?? 0,
      early_close: options.earlyClose ?? 0,
    },
    num_transitions: n,
    num_trajectories: episodes.length,
    skipped_failures: skipped,
    instructions,
    episodes,
  };
  writeFileSync(path.join(options.out, "episodes.json"), `${JSON.stringify(metadata, null, 2)}\n`);
  // Statistics over the stored float32 values, as a reader of actions.npy would compute them.
  const stored = (rows: number[][]) => rows.map((r) => Array.from(Float32Array.from(r)));
  writeFileSync(
    path.join(options.out, "dataset_statistics.json"),
    `${JSON.stringify(datasetStatistics(stored(actions), stored(states), episodes.length), null, 2)}\n`,
  );
  return metadata;
}

export type LoadedDemos = {
  metadata: DemoMetadata;
  frames: Uint8Array;
  frameShape: number[];
  actions: Float32Array;
  states: Float32Array;
  statistics: ReturnType<typeof datasetStatistics>;
};

/** Reads a folder written by writeDemos (for tests and TypeScript consumers). */
export function readDemos(dir: string): LoadedDemos {
  const load = (name: string) => decodeNpy(new Uint8Array(readFileSync(path.join(dir, name))));
  const frames = load("frames.npy");
  const actions = load("actions.npy");
  const states = load("states.npy");
  if (frames.dtype !== "uint8" || actions.dtype !== "float32" || states.dtype !== "float32") {
    throw new Error("unexpected dtypes in the demonstrations");
  }
  return {
    metadata: JSON.parse(readFileSync(path.join(dir, "episodes.json"), "utf8")) as DemoMetadata,
    frames: frames.data,
    frameShape: frames.shape,
    actions: actions.data,
    states: states.data,
    statistics: JSON.parse(readFileSync(path.join(dir, "dataset_statistics.json"), "utf8")),
  };
}
