import { describe, expect, it } from "vitest";
import { setupEpisode } from "../../sim/episode.ts";
import { render } from "../../sim/render.ts";
import { EXCLUSION_MARGIN, exclusionBox, inside, parseSafetyProfile } from "../../sim/safety-scenario.ts";
import { BLOCK_SIZE, WORKSPACE } from "../../sim/scene.ts";
import { ruleNames } from "../../sim/server-policy.ts";
import { decodeJsonNumpyFloats, frameJsonNumpy, packOpenpi, rows, unpackOpenpi } from "../../sim/wire.ts";
import { decodeJsonNumpy, encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import type { NdArray } from "../../src/modules/inference/ndarray.ts";

const frame = render(setupEpisode(5, { instruction: "pick up the blue block" }).scene);

describe("the sim's wire codecs agree with the server's", () => {
  it("a frame as json_numpy decodes on the server to the same pixels", () => {
    const decoded = decodeJsonNumpy(frameJsonNumpy(frame));
    expect([decoded.dtype, decoded.shape]).toEqual(["|u1", [224, 224, 3]]);
    expect(Buffer.from(decoded.data as Uint8Array).equals(Buffer.from(frame.data))).toBe(true);
  });

  it("an openpi observation decodes on the server to the same pixels, state and prompt", () => {
    const state = Float32Array.of(0.1, -0.2, 0.15, 0, 0, 0, 1);
    const obs = unpackMsgpackNumpy(
      packOpenpi({ "observation/image": frame, "observation/state": state, prompt: "pick up the blue block" }),
    ) as Record<string, NdArray | string>;
    const image = obs["observation/image"] as NdArray;
    expect([image.dtype, image.shape]).toEqual(["|u1", [224, 224, 3]]);
    expect(Buffer.from(image.data as Uint8Array).equals(Buffer.from(frame.data))).toBe(true);
    expect([...((obs["observation/state"] as NdArray).data as Float32Array)]).toEqual([...state]);
    expect(obs.prompt).toBe("pick up the blue block");
  });

  it("reads the server's answers: /act's float64 [7] and openpi's float32 [H, 7] chunk", () => {
    const action = [0.01, -0.02, 0.003, 0, 0, 0, 1];
    expect(decodeJsonNumpyFloats(encodeJsonNumpy(Float64Array.from(action), [7]))?.values).toEqual(action);
    const chunk = Float32Array.from({ length: 14 }, (_, i) => i / 8);
    const reply = unpackOpenpi(packMsgpackNumpy({ actions: { data: chunk, shape: [2, 7] }, inference_id: "x" })) as {
      actions: { values: number[]; shape: number[] };
      inference_id: string;
    };
    expect(rows(reply.actions)).toEqual([[...chunk.slice(0, 7)], [...chunk.slice(7)]]);
    expect(reply.inference_id).toBe("x");
  });

  it("names violated rules from REST/stream ({type}) and openpi ({rule}) lists", () => {
    expect(ruleNames([{ type: "workspace" }, { type: "workspace" }, { rule: "linear_velocity" }])).toEqual([
      "workspace",
      "linear_velocity",
    ]);
    expect(ruleNames(undefined)).toEqual([]);
  });
});

describe("the exclusion box", () => {
  it("keeps the gripper's start inside and the named block's footprint outside, for many seeds", () => {
    for (let seed = 0; seed < 300; seed++) {
      const { scene } = setupEpisode(seed, { instruction: "pick up the red block" });
      const box = exclusionBox(scene, "red");
      const block = scene.blocks.find((b) => b.colour === "red");
      if (!block) throw new Error("no red block");
      expect(inside(box, [scene.ee.x, scene.ee.y, scene.ee.z]), `seed ${seed}`).toBe(true);
      // No point of the block (corners and centre, at its top) is inside the box.
      const h = BLOCK_SIZE / 2;
      for (const [dx, dy] of [
        [0, 0],
        [-h, -h],
        [-h, h],
        [h, -h],
        [h, h],
      ] as const) {
        expect(inside(box, [block.pos.x + dx, block.pos.y + dy, block.pos.z + h]), `seed ${seed}`).toBe(false);
      }
      // Only one side moved, by the block's half size and the margin.
      expect(box.x[0] >= WORKSPACE.xMin && box.x[1] <= WORKSPACE.xMax).toBe(true);
      expect(EXCLUSION_MARGIN).toBeGreaterThan(0);
    }
  });

  it("parses exclude-<colour> and nothing else", () => {
    expect(parseSafetyProfile("exclude-green")).toEqual({ exclude: "green" });
    expect(parseSafetyProfile("exclude-purple")).toBeNull();
    expect(parseSafetyProfile("green")).toBeNull();
  });
});
