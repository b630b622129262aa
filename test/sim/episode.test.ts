import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { expertPolicy, type Observation, runEpisode, setupEpisode } from "../../sim/episode.ts";
import { encodeGif, PALETTE, quantize, writeGif } from "../../sim/gif.ts";
import type { Frame } from "../../sim/render.ts";
import { STEP_LIMITS } from "../../sim/tasks.ts";

const same = (a: Frame, b: Frame) => Buffer.from(a.data).equals(Buffer.from(b.data));

describe("runEpisode", () => {
  it("is deterministic: the same seed gives the same frames and actions, bit for bit", async () => {
    const options = { noise: 4, lighting: true } as const;
    const a = await runEpisode(setupEpisode(21, { kind: "put_on", paraphrase: true }), expertPolicy, options);
    const b = await runEpisode(setupEpisode(21, { kind: "put_on", paraphrase: true }), expertPolicy, options);
    expect(a.success).toBe(true);
    expect(a.instruction).toBe(b.instruction);
    expect(a.actions).toEqual(b.actions);
    expect(a.frames).toHaveLength(a.steps + 1);
    expect(a.frames.every((f, i) => same(f, b.frames[i] as Frame))).toBe(true);
    const c = await runEpisode(setupEpisode(22, { kind: "put_on", paraphrase: true }), expertPolicy, options);
    expect(same(a.frames[0] as Frame, c.frames[0] as Frame)).toBe(false);
  });

  it("asks the policy with the frame, the instruction and the robot state, and awaits async policies", async () => {
    const seen: Observation[] = [];
    const setup = setupEpisode(3, { instruction: "move to the blue block" });
    const result = await runEpisode(setup, async (observation) => {
      seen.push(observation);
      await new Promise((resolve) => setImmediate(resolve));
      return expertPolicy(observation);
    });
    expect(result.success).toBe(true);
    expect(seen).toHaveLength(result.steps);
    const first = seen[0];
    expect(first?.instruction).toBe("move to the blue block");
    expect(first?.frame?.data).toHaveLength(224 * 224 * 3);
    expect(first?.state.gripper).toBe(1);
    expect(first?.state.eePosition).toHaveLength(3);
    expect(first?.state.proprio).toHaveLength(7);
    expect(result.states[0]).toEqual(first?.state);
  });

  it("stops at the task's step limit when the policy does nothing", async () => {
    const result = await runEpisode(setupEpisode(5, { kind: "pick" }), () => [0, 0, 0, 0, 0, 0, 1], {
      keepFrames: false,
    });
    expect(result.success).toBe(false);
    expect(result.steps).toBe(STEP_LIMITS.pick);
    expect(result.frames).toEqual([]);
  });

  it("builds the scene an instruction needs and refuses an unknown one", () => {
    for (let seed = 0; seed < 20; seed++) {
      const setup = setupEpisode(seed, { instruction: "put the yellow block on the green block" });
      expect(setup.task).toEqual({ kind: "put_on", colour: "yellow", target: "green" });
      const colours = setup.scene.blocks.map((b) => b.colour);
      expect(colours).toContain("yellow");
      expect(colours).toContain("green");
    }
    expect(() => setupEpisode(1, { instruction: "make coffee" })).toThrow(/not a known task/);
  });
});

describe("encodeGif", () => {
  it("writes an animated GIF that decodes (libvips) to the palette colours of each frame", async () => {
    const episode = await runEpisode(setupEpisode(4, { kind: "pick" }), expertPolicy, { noise: 6 });
    const frames = episode.frames.slice(0, 4);
    const gif = encodeGif(frames, { delayMs: 100 });
    expect(Buffer.from(gif.subarray(0, 6)).toString("ascii")).toBe("GIF89a");
    expect(gif[gif.length - 1]).toBe(0x3b);
    const { data, info } = await sharp(gif, { pages: -1 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([224, 224 * frames.length, 3]);
    const meta = await sharp(gif).metadata();
    expect(meta.pages).toBe(frames.length);
    expect(meta.delay).toEqual(frames.map(() => 100));
    frames.forEach((frame, k) => {
      const indices = quantize(frame);
      const expected = new Uint8Array(indices.length * 3);
      indices.forEach((p, i) => {
        expected.set(PALETTE.subarray(p * 3, p * 3 + 3), i * 3);
      });
      const page = data.subarray(k * 224 * 224 * 3, (k + 1) * 224 * 224 * 3);
      expect(Buffer.from(page).equals(Buffer.from(expected))).toBe(true);
    });
  });

  it("writes the GIF of an episode to a file, creating the folder", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sim-gif-"));
    try {
      const episode = await runEpisode(setupEpisode(8, { kind: "move_to" }), expertPolicy);
      const file = path.join(dir, "nested", "episode.gif");
      writeGif(file, episode.frames);
      const meta = await sharp(readFileSync(file)).metadata();
      expect([meta.format, meta.pages, meta.width]).toEqual(["gif", episode.steps + 1, 224]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses no frames and frames of different sizes", () => {
    expect(() => encodeGif([])).toThrow(/at least one frame/);
    const a = { width: 2, height: 2, data: new Uint8Array(12) };
    const b = { width: 3, height: 2, data: new Uint8Array(18) };
    expect(() => encodeGif([a, b])).toThrow(/one size/);
  });
});
