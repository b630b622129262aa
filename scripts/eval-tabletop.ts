/**
 * Closed-loop evaluation of a trained tabletop model directory in process (no server), through
 * the engine's own config parser, tokenizer, token decode and un-normalization (sim/onnx-policy.ts).
 *   npx node scripts/eval-tabletop.ts [--model models/tabletop-policy] [--episodes 100]
 *     [--seed-start 900000] [--kind pick] [--transform none|flip|swap-rb] [--other-colour]
 *     [--execute-steps 1]   chunk models: rows of each chunk executed before asking again
 * Seeds from 900000 up are held out: the demonstrations use 10000 and up (scripts/sim-demos.ts).
 * `--other-colour` names another block present in the scene instead (the same scene): success is
 * lifting that block, and the report counts episodes that ever held the unnamed one.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { namingAnotherBlock, runEpisode, setupEpisode } from "../sim/episode.ts";
import { type FrameTransform, loadOnnxPolicy } from "../sim/onnx-policy.ts";
import { TASK_KINDS, type TaskKind } from "../sim/tasks.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "models/tabletop-policy" },
    episodes: { type: "string", default: "100" },
    "seed-start": { type: "string", default: "900000" },
    kind: { type: "string", default: "pick" },
    transform: { type: "string", default: "none" },
    "other-colour": { type: "boolean", default: false },
    "execute-steps": { type: "string", default: "1" },
  },
});
const kind = values.kind as TaskKind;
if (!TASK_KINDS.includes(kind)) throw new Error(`--kind: one of ${TASK_KINDS.join(", ")}`);
const how = values.transform as FrameTransform;
if (!["none", "flip", "swap-rb"].includes(how)) throw new Error("--transform: none, flip or swap-rb");
const executeSteps = Number(values["execute-steps"]);
if (!Number.isInteger(executeSteps) || executeSteps < 1) throw new Error("--execute-steps: a positive integer");
const policy = await loadOnnxPolicy(path.resolve(values.model as string));
const n = Number(values.episodes);
let succeeded = 0;
let steps = 0;
let heldOriginal = 0;
for (let i = 0; i < n; i++) {
  const drawn = setupEpisode(Number(values["seed-start"]) + i, { kind });
  const original = drawn.task.colour;
  // --other-colour: the same scene, the instruction naming another block: success is lifting that one.
  const setup = values["other-colour"] ? namingAnotherBlock(drawn) : drawn;
  let touchedOriginal = false;
  // Chunk models: execute the first `executeSteps` rows of each chunk before asking again, as
  // `npm run sim --execute-steps` does through the server.
  let plan: number[][] = [];
  const r = await runEpisode(
    setup,
    async (obs) => {
      const next = plan.shift();
      if (next !== undefined) return next;
      const rows = await policy.chunk(obs.frame as NonNullable<typeof obs.frame>, setup.instruction, how);
      plan = rows.slice(1, executeSteps).map((a) => [...a]);
      return rows[0] as number[];
    },
    {
      keepFrames: false,
      onStep: ({ scene }) => {
        if (scene.blocks[scene.held]?.colour === original) touchedOriginal = true;
      },
    },
  );
  if (r.success) succeeded++;
  steps += r.steps;
  if (touchedOriginal) heldOriginal++;
}
await policy.close();
console.log(
  JSON.stringify({
    model: values.model,
    kind,
    transform: how,
    other_colour: values["other-colour"],
    execute_steps: executeSteps,
    episodes: n,
    success: succeeded / n,
    // With --other-colour: episodes that ever held the block the scene was drawn for (not named).
    ...(values["other-colour"] ? { held_the_unnamed_block: heldOriginal / n } : {}),
    mean_steps: steps / n,
  }),
);
