/**
 * Closed-loop evaluation of a trained tabletop policy in process (no server): onnxruntime-node on
 * the model directory, the engine's own tokenizer, token decode and un-normalization, the simulator.
 *   npx node scripts/eval-tabletop.ts [--model models/tabletop-policy] [--episodes 100]
 *     [--seed-start 900000] [--kind pick] [--flip] [--swap-rb] [--other-colour]
 * Seeds from 900000 up are held out: the demonstrations use 10000.. (scripts/sim-demos.ts).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { type Policy, runEpisode, setupEpisode } from "../sim/episode.ts";
import type { Frame } from "../sim/render.ts";
import { COLOURS } from "../sim/scene.ts";
import { decodeTokens, unnormalize } from "../src/modules/models/action-codec.ts";
import { parseDatasetStatistics } from "../src/modules/models/dataset-statistics.ts";
import { tokenize } from "../src/modules/models/tokenizer.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/tabletop-policy" },
    episodes: { type: "string", default: "100" },
    "seed-start": { type: "string", default: "900000" },
    kind: { type: "string", default: "pick" },
    flip: { type: "boolean", default: false },
    "swap-rb": { type: "boolean", default: false },
    "other-colour": { type: "boolean", default: false },
  },
});
const dir = path.resolve(values.model as string);
const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
const statsDoc = parseDatasetStatistics(JSON.parse(readFileSync(path.join(dir, "dataset_statistics.json"), "utf8")));
const stats = statsDoc.entries.get(config.default_unnorm_key)?.action;
if (stats === undefined) throw new Error("no statistics");
const session = await ort.InferenceSession.create(path.join(dir, "model.onnx"), { intraOpNumThreads: 1 });
const tok = { kind: "hash-words" as const, vocabSize: 512, maxLength: 16 };

function transform(f: Frame): Uint8Array {
  const out = new Uint8Array(f.data);
  if (values.flip) {
    const row = f.width * 3;
    for (let y = 0; y < f.height; y++)
      out.set(f.data.subarray((f.height - 1 - y) * row, (f.height - y) * row), y * row);
  }
  if (values["swap-rb"])
    for (let i = 0; i < out.length; i += 3) [out[i], out[i + 2]] = [out[i + 2] as number, out[i] as number];
  return out;
}

let sentInstruction = "";
const policy: Policy = async (obs) => {
  if (obs.frame === null) throw new Error("no frame");
  const image = new ort.Tensor("uint8", transform(obs.frame), [1, 224, 224, 3]);
  const tokens = new ort.Tensor("int64", tokenize(sentInstruction, tok), [1, 16]);
  const out = await session.run({ image, tokens });
  const data = out[config.output.name]?.data as Float32Array;
  if (config.output.kind === "action_token_logits") {
    const t: number[] = [];
    for (let d = 0; d < 7; d++) {
      let best = 0;
      for (let k = 1; k < 256; k++) if ((data[d * 256 + k] as number) > (data[d * 256 + best] as number)) best = k;
      t.push(31744 + best);
    }
    return unnormalize(decodeTokens(t), stats);
  }
  return unnormalize(Array.from(data.subarray(0, 7)), stats);
};

const n = Number(values.episodes);
let ok = 0;
let steps = 0;
let wentToOther = 0;
for (let i = 0; i < n; i++) {
  const setup = setupEpisode(Number(values["seed-start"]) + i, { kind: values.kind as "pick" });
  sentInstruction = setup.instruction;
  if (values["other-colour"]) {
    const present = setup.scene.blocks.map((b) => b.colour);
    const target = (setup.task as { colour: string }).colour;
    const other = COLOURS.find((c) => c !== target && present.includes(c));
    sentInstruction = setup.instruction.replace(target, other as string);
  }
  const r = await runEpisode(setup, policy, { keepFrames: false });
  if (r.success) ok++;
  steps += r.steps;
  if (values["other-colour"]) {
    const held = setup.scene.held;
    if (held >= 0 && sentInstruction.includes(setup.scene.blocks[held]?.colour as string)) wentToOther++;
  }
}
console.log(
  JSON.stringify({
    model: values.model,
    kind: values.kind,
    episodes: n,
    success: ok / n,
    mean_steps: steps / n,
    ...(values["other-colour"] ? { held_the_named_other_block: wentToOther / n } : {}),
  }),
);
