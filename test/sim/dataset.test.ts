import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DATASET_FORMAT,
  datasetStatistics,
  demoSeed,
  downsample,
  quantileSorted,
  readDemos,
  statistics,
  UNNORM_KEY,
  writeDemos,
} from "../../sim/dataset.ts";
import { expertPolicy, runEpisode, setupEpisode } from "../../sim/episode.ts";
import { decodeNpy, encodeNpy, npyHeader } from "../../sim/npy.ts";
import type { Frame } from "../../sim/render.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("npy", () => {
  it("writes numpy's v1.0 header, padded to 64 bytes", () => {
    const header = npyHeader("float32", [3, 7]);
    expect(header.length % 64).toBe(0);
    expect(Array.from(header.subarray(0, 8))).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const text = Buffer.from(header.subarray(10)).toString("latin1");
    expect(text.startsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 7), }")).toBe(true);
    expect(text.endsWith(" \n")).toBe(true);
    expect((header[8] as number) | ((header[9] as number) << 8)).toBe(header.length - 10);
    expect(Buffer.from(npyHeader("uint8", [5]).subarray(10)).toString("latin1")).toContain("'shape': (5,)");
  });

  it("round-trips uint8 and float32 arrays", () => {
    const u = { dtype: "uint8" as const, shape: [2, 2, 3], data: Uint8Array.from({ length: 12 }, (_, i) => i * 20) };
    expect(decodeNpy(encodeNpy(u))).toEqual(u);
    const f = { dtype: "float32" as const, shape: [2, 3], data: Float32Array.from([0.5, -1, 3.25, 1e-3, 0, 7]) };
    expect(decodeNpy(encodeNpy(f))).toEqual(f);
    expect(() => encodeNpy({ ...f, shape: [4, 3] })).toThrow(/does not match/);
    expect(() => decodeNpy(new Uint8Array(20))).toThrow(/not a .npy/);
  });
});

describe("statistics", () => {
  it("computes quantiles as numpy.quantile does (linear interpolation)", () => {
    // np.quantile([1, 2, 3, 4, 5], [0.01, 0.99]) == [1.04, 4.96]
    expect(quantileSorted([1, 2, 3, 4, 5], 0.01)).toBeCloseTo(1.04, 12);
    expect(quantileSorted([1, 2, 3, 4, 5], 0.99)).toBeCloseTo(4.96, 12);
    expect(quantileSorted([7], 0.5)).toBe(7);
  });

  it("gives mean, std (ddof 0), min, max, q01, q99 per dimension, and OpenVLA's layout", () => {
    const s = statistics([
      [1, 10],
      [3, 10],
    ]);
    expect(s).toEqual({ mean: [2, 10], std: [1, 0], min: [1, 10], max: [3, 10], q01: [1.02, 10], q99: [2.98, 10] });
    const ds = datasetStatistics([[0, 0, 0, 0, 0, 0, 1]], [[0, 0, 0, 0, 0, 0, 1]], 1);
    expect(Object.keys(ds)).toEqual([UNNORM_KEY]);
    expect(ds[UNNORM_KEY]?.action.mask).toEqual([true, true, true, true, true, true, false]);
    expect(ds[UNNORM_KEY]?.num_transitions).toBe(1);
    expect(ds[UNNORM_KEY]?.num_trajectories).toBe(1);
  });
});

describe("downsample", () => {
  it("averages factor x factor blocks", () => {
    const frame: Frame = { width: 2, height: 2, data: Uint8Array.from([0, 10, 20, 2, 10, 21, 4, 10, 20, 6, 10, 20]) };
    expect(downsample(frame, 2)).toEqual({ width: 1, height: 1, data: Uint8Array.from([3, 10, 20]) });
    expect(() => downsample(frame, 3)).toThrow(/does not divide/);
  });
});

describe("writeDemos", () => {
  it("writes frames, actions, states, episodes and statistics that read back consistently", async () => {
    const out = mkdtempSync(path.join(tmpdir(), "sim-demos-"));
    dirs.push(out);
    const metadata = await writeDemos({ out, episodes: 2, size: 56, seedStart: 500, noise: 2, lighting: true });
    const demos = readDemos(out);
    expect(demos.metadata).toEqual(metadata);
    expect(metadata.format).toBe(DATASET_FORMAT);
    expect(metadata.num_trajectories).toBe(6);
    expect(metadata.skipped_failures).toBe(0);
    const n = metadata.num_transitions;
    expect(metadata.episodes.reduce((a, e) => a + e.length, 0)).toBe(n);
    expect(demos.frameShape).toEqual([n, 56, 56, 3]);
    expect(demos.actions).toHaveLength(n * 7);
    expect(demos.states).toHaveLength(n * 7);
    expect(metadata.episodes.map((e) => e.kind)).toEqual(["pick", "move_to", "put_on", "pick", "move_to", "put_on"]);
    for (const e of metadata.episodes) {
      expect(metadata.instructions[e.instruction_id]).toBe(e.instruction);
      expect(e.start).toBe(metadata.episodes.slice(0, e.index).reduce((a, x) => a + x.length, 0));
    }

    // Episode 2 re-run: its actions (as float32) and its first frame (downsampled) are the stored ones.
    const e = metadata.episodes[2];
    if (!e) throw new Error("episode 2");
    expect(e.seed).toBe(demoSeed(500, 0, 2, 3));
    const rerun = await runEpisode(setupEpisode(e.seed, { kind: "put_on", paraphrase: true }), expertPolicy, {
      noise: 2,
      lighting: true,
    });
    expect(rerun.instruction).toBe(e.instruction);
    expect(rerun.steps).toBe(e.length);
    expect(Array.from(demos.actions.subarray(e.start * 7, (e.start + e.length) * 7))).toEqual(
      Array.from(Float32Array.from(rerun.actions.flat())),
    );
    const size = 56 * 56 * 3;
    const stored = demos.frames.subarray(e.start * size, (e.start + 1) * size);
    expect(Buffer.from(stored).equals(Buffer.from(downsample(rerun.frames[0] as Frame, 4).data))).toBe(true);

    // Statistics in OpenVLA's layout, over the stored actions.
    const stats = demos.statistics[UNNORM_KEY];
    expect(stats?.num_transitions).toBe(n);
    expect(stats?.num_trajectories).toBe(6);
    expect(stats?.action.mask).toEqual([true, true, true, true, true, true, false]);
    const rows = Array.from({ length: n }, (_, i) => Array.from(demos.actions.subarray(i * 7, i * 7 + 7)));
    expect(stats?.action).toEqual({ ...statistics(rows), mask: [true, true, true, true, true, true, false] });
    expect(stats?.action.min[6]).toBe(0);
    expect(stats?.action.max[6]).toBe(1);
    const file = JSON.parse(readFileSync(path.join(out, "dataset_statistics.json"), "utf8"));
    expect(Object.keys(file[UNNORM_KEY].action).sort()).toEqual(["mask", "max", "mean", "min", "q01", "q99", "std"]);
  });
  it("records recoveries with --early-close: a gripper shut on nothing, then the expert's open and back-off labels", async () => {
    const out = mkdtempSync(path.join(tmpdir(), "sim-demos-"));
    dirs.push(out);
    const metadata = await writeDemos({ out, episodes: 6, size: 28, kinds: ["pick"], earlyClose: 1 });
    expect(metadata.options.early_close).toBe(1);
    expect(metadata.skipped_failures).toBe(0);
    const demos = readDemos(out);
    let recoveries = 0;
    for (const e of metadata.episodes) {
      for (let i = e.start; i < e.start + e.length; i++) {
        const gripper = demos.states[i * 7 + 6] as number;
        const label = Array.from(demos.actions.subarray(i * 7, i * 7 + 7));
        // Closed (state) before holding anything: the label opens and rises.
        if (gripper < 0.5 && (label[6] as number) >= 0.5) {
          expect(label[2]).toBeGreaterThan(0);
          recoveries++;
        }
      }
    }
    // At most one premature close per episode (each step near the block draws it at 1/2, so nearly
    // every episode has one), and none of them is the successful grasp (that one stays closed).
    expect(recoveries).toBeGreaterThanOrEqual(4);
    expect(recoveries).toBeLessThanOrEqual(6);
    const plain = await writeDemos({ out: `${out}-plain`, episodes: 6, size: 28, kinds: ["pick"] });
    dirs.push(`${out}-plain`);
    expect(plain.num_transitions).toBeLessThan(metadata.num_transitions);
  });
});
