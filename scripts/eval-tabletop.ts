/**
 * Closed-loop evaluation of a trained tabletop model directory in process (no server), through
 * the engine's own config parser, tokenizer, token decode and un-normalization (sim/onnx-policy.ts).
 *   npx node scripts/eval-tabletop.ts [--model models/tabletop-policy] [--episodes 100]
 *     [--seed-start 900000] [--kind pick] [--transform none|flip|swap-rb] [--other-colour]
 * Seeds from 900000 up are held out: the demonstrations use 10000 and up (scripts/sim-demos.ts).
 * `--other-colour` names another block present in the scene and counts episodes whose gripper
 * ends up holding that block.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { runEpisode, setupEpisode } from "../sim/episode.ts";
import { type FrameTransform, loadOnnxPolicy } from "../sim/onnx-policy.ts";
import { COLOURS } from "../sim/scene.ts";
import { TASK_KINDS, type TaskKind } from "../sim/tasks.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/tabletop-policy" },
    episodes: { type: "string", default: "100" },
    "seed-start": { type: "string", default: "900000" },
    kind: { type: "string", default: "pick" },
    transform: { type: "string", default: "none" },
    "other-colour": { type: "boolean", default: false },
  },
});
const kind = values.kind as TaskKind;
if (!TASK_KINDS.includes(kind)) throw new Error(`--kind: one of ${TASK_KINDS.join(", ")}`);
const how = values.transform as FrameTransform;
if (!["none", "flip", "swap-rb"].includes(how)) throw new Error("--transform: none, flip or swap-rb");
const policy = await loadOnnxPolicy(path.resolve(values.model as string));
const n = Number(values.episodes);
let succeeded = 0;
let steps = 0;
let heldNamed = 0;
for (let i = 0; i < n; i++) {
  const setup = setupEpisode(Number(values["seed-start"]) + i, { kind });
  let instruction = setup.instruction;
  if (values["other-colour"]) {
    const target = (setup.task as { colour: string }).colour;
    const present = setup.scene.blocks.map((b) => b.colour as string);
    const other = COLOURS.find((c) => c !== target && present.includes(c));
    if (other !== undefined) instruction = instruction.replace(target, other);
  }
  const r = await runEpisode(setup, (obs) => policy.act(obs.frame as NonNullable<typeof obs.frame>, instruction, how), {
    keepFrames: false,
  });
  if (r.success) succeeded++;
  steps += r.steps;
  const held = setup.scene.blocks[setup.scene.held];
  if (held !== undefined && instruction.includes(held.colour)) heldNamed++;
}
await policy.close();
console.log(
  JSON.stringify({
    model: values.model,
    kind,
    transform: how,
    other_colour: values["other-colour"],
    episodes: n,
    success: succeeded / n,
    holding_the_named_block: heldNamed / n,
    mean_steps: steps / n,
  }),
);
