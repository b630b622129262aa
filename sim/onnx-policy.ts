import path from "node:path";
import * as ort from "onnxruntime-node";
import { decodeTokens, unnormalize } from "../src/modules/models/action-codec.ts";
import { loadOnnxModelConfig, logitsToTokens } from "../src/modules/models/backends/onnx.ts";
import { loadDatasetStatistics } from "../src/modules/models/dataset-statistics.ts";
import { tokenize } from "../src/modules/models/tokenizer.ts";
import type { Frame } from "./render.ts";
import type { Action } from "./scene.ts";

/** A change applied to the camera frame before the model sees it (to prove the policy looks). */
export type FrameTransform = "none" | "flip" | "swap-rb";

export function transformFrame(frame: Frame, how: FrameTransform): Uint8Array {
  const out = new Uint8Array(frame.data);
  if (how === "flip") {
    const row = frame.width * 3;
    for (let y = 0; y < frame.height; y++) {
      out.set(frame.data.subarray((frame.height - 1 - y) * row, (frame.height - y) * row), y * row);
    }
  } else if (how === "swap-rb") {
    for (let i = 0; i < out.length; i += 3) {
      const r = out[i] as number;
      out[i] = out[i + 2] as number;
      out[i + 2] = r;
    }
  }
  return out;
}

export interface OnnxPolicy {
  /** One action for a 224x224 frame and an instruction; chunk models answer their first step. */
  act(frame: Frame, instruction: string, how?: FrameTransform): Promise<Action>;
  /** Every row of the answer: a chunk model's whole chunk (un-normalized), a logits model's one action. */
  chunk(frame: Frame, instruction: string, how?: FrameTransform): Promise<Action[]>;
  close(): Promise<void>;
}

/**
 * A model directory (docs/models.md) run in process with the engine's own pieces: its config
 * parser, tokenizer, argmax-to-token, OpenVLA token decode and un-normalization. The same numbers
 * the server would answer for the same pixels (without the server: for evaluation and tests).
 */
export async function loadOnnxPolicy(dir: string): Promise<OnnxPolicy> {
  const config = loadOnnxModelConfig(dir);
  const statistics = loadDatasetStatistics(path.join(dir, config.datasetStatistics ?? "dataset_statistics.json"));
  const key = config.defaultUnnormKey ?? statistics.keys[0];
  const stats = key === undefined ? undefined : statistics.entries.get(key)?.action;
  if (stats === undefined) throw new Error(`${dir}: no action statistics`);
  const session = await ort.InferenceSession.create(path.join(dir, "model.onnx"), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const out = config.output;
  const chunk = async (frame: Frame, instruction: string, how: FrameTransform = "none"): Promise<Action[]> => {
    if (frame.width !== config.image.width || frame.height !== config.image.height) {
      throw new Error(`the model takes ${config.image.width}x${config.image.height} frames`);
    }
    const feeds = {
      [config.image.name]: new ort.Tensor("uint8", transformFrame(frame, how), [1, frame.height, frame.width, 3]),
      [config.instruction.name]: new ort.Tensor("int64", tokenize(instruction, config.instruction.tokenizer), [
        1,
        config.instruction.tokenizer.maxLength,
      ]),
    };
    const result = await session.run(feeds);
    const data = result[out.name]?.data as Float32Array | undefined;
    if (data === undefined) throw new Error(`the model has no output ${out.name}`);
    if (out.kind === "action_token_logits") {
      return [unnormalize(decodeTokens(logitsToTokens(data, 0, out.actionDim, out.bins)), stats)];
    }
    const rows: Action[] = [];
    for (let r = 0; r * out.actionDim < data.length; r++) {
      rows.push(unnormalize(Array.from(data.subarray(r * out.actionDim, (r + 1) * out.actionDim)), stats));
    }
    return rows;
  };
  return {
    async act(frame, instruction, how = "none") {
      return (await chunk(frame, instruction, how))[0] as Action;
    },
    chunk,
    close: () => session.release(),
  };
}
