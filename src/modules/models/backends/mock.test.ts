import { describe, expect, it } from "vitest";
import { decodeToken } from "../action-codec.ts";
import { MockBackend, TRAJECTORY_ARM_BOUND, TRAJECTORY_GRIPPER_BOUND } from "./mock.ts";
import type { BackendRequest } from "./types.ts";

const H = 10;
const D = 7;
const key = (prompt: string, imageSha256 = "ab".repeat(32), modelId = "mock-pi0") => ({
  modelId,
  prompt,
  imageSha256,
});

/** Largest |x[t+1] - x[t]| and |x[t+2] - 2 x[t+1] + x[t]| over the arm dimensions of a chunk. */
function roughness(chunk: readonly (readonly number[])[]): { step: number; bend: number } {
  let step = 0;
  let bend = 0;
  for (let d = 0; d < D - 1; d++) {
    const x = chunk.map((r) => r[d] as number);
    for (let t = 0; t + 1 < x.length; t++) step = Math.max(step, Math.abs((x[t + 1] as number) - (x[t] as number)));
    for (let t = 0; t + 2 < x.length; t++) {
      bend = Math.max(bend, Math.abs((x[t + 2] as number) - 2 * (x[t + 1] as number) + (x[t] as number)));
    }
  }
  return { step, bend };
}

const prompts = Array.from({ length: 200 }, (_, i) => `task ${i}`);

describe("MockBackend.trajectory (pi0-like chunks)", () => {
  it("is deterministic in (model, image hash, prompt) and changes with each of them", () => {
    const a = MockBackend.trajectory(key("stack the cups"), H, D);
    expect(MockBackend.trajectory(key("stack the cups"), H, D)).toEqual(a);
    expect(MockBackend.trajectory(key("stack the bowls"), H, D)).not.toEqual(a);
    expect(MockBackend.trajectory(key("stack the cups", "cd".repeat(32)), H, D)).not.toEqual(a);
    expect(MockBackend.trajectory(key("stack the cups", undefined, "other"), H, D)).not.toEqual(a);
  });

  it("is (H, D) of continuous values inside [-1, 1], not token bins", () => {
    const values = new Set<number>();
    for (const p of prompts) {
      const chunk = MockBackend.trajectory(key(p), H, D);
      expect(chunk).toHaveLength(H);
      for (const row of chunk) {
        expect(row).toHaveLength(D);
        row.slice(0, D - 1).forEach((x) => {
          expect(Math.abs(x)).toBeLessThanOrEqual(TRAJECTORY_ARM_BOUND);
          values.add(x);
        });
        expect(Math.abs(row[D - 1] as number)).toBeLessThanOrEqual(TRAJECTORY_GRIPPER_BOUND);
      }
    }
    // Continuous: far more distinct values than OpenVLA's 255 bin centres.
    expect(values.size).toBeGreaterThan(10_000);
  });

  it("is smooth across the horizon like a trajectory; the token mock's chunks are not", () => {
    let worst = { step: 0, bend: 0 };
    let tokenWorst = { step: 0, bend: 0 };
    for (const p of prompts) {
      const r = roughness(MockBackend.trajectory(key(p), H, D));
      worst = { step: Math.max(worst.step, r.step), bend: Math.max(worst.bend, r.bend) };
      const tokens = MockBackend.tokens(key(p), H * D, D).map(decodeToken);
      const t = roughness(Array.from({ length: H }, (_, i) => tokens.slice(i * D, (i + 1) * D)));
      tokenWorst = { step: Math.max(tokenWorst.step, t.step), bend: Math.max(tokenWorst.bend, t.bend) };
    }
    // Amplitude <= 0.6 and <= 0.75 cycles over 10 steps: |step| <= 0.6 * 2 pi * 0.075 = 0.283.
    expect(worst.step).toBeLessThanOrEqual(0.3);
    expect(worst.bend).toBeLessThanOrEqual(0.15);
    expect(tokenWorst.step).toBeGreaterThan(1);
  });

  it("moves the gripper at most once per chunk, monotonically, and holds it otherwise", () => {
    let switching = 0;
    for (const p of prompts) {
      const g = MockBackend.trajectory(key(p), H, D).map((r) => r[D - 1] as number);
      const diffs = g.slice(1).map((x, t) => x - (g[t] as number));
      expect(diffs.every((x) => x >= 0) || diffs.every((x) => x <= 0)).toBe(true);
      if (Math.sign(g[0] as number) !== Math.sign(g[H - 1] as number)) switching++;
    }
    // About half the chunks open or close the gripper; the rest hold it.
    expect(switching).toBeGreaterThan(50);
    expect(switching).toBeLessThan(150);
  });

  it("infer() answers normalized chunks with output trajectory, token ids by default", async () => {
    const req = {
      modelId: "m",
      prompt: "go",
      instruction: "go",
      unnormKey: "k",
      image: { sha256: "ef".repeat(32) },
    } as unknown as BackendRequest;
    const trajectory = new MockBackend({ actionDim: D, chunk: H, latencyMs: 0, perItemMs: 0, output: "trajectory" });
    expect(await trajectory.infer([req])).toEqual([
      { kind: "normalized", actions: MockBackend.trajectory({ ...req, imageSha256: "ef".repeat(32) }, H, D) },
    ]);
    const tokens = new MockBackend({ actionDim: D, chunk: 1, latencyMs: 0, perItemMs: 0 });
    expect((await tokens.infer([req]))[0]).toMatchObject({ kind: "tokens" });
  });
});
