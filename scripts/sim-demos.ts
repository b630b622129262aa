/**
 * Writes expert demonstrations of the simulated tabletop for behaviour cloning.
 *   npm run sim:demos -- --out data/sim-demos --episodes 200 [--size 56] [--seed-start 10000]
 *     [--kinds pick,move_to,put_on] [--noise 4] [--lighting] [--perturb 0.004] [--early-close 0.3]
 *     [--no-paraphrase]
 * The format is documented in docs/sim.md.
 */
import { parseArgs } from "node:util";
import { writeDemos } from "../sim/dataset.ts";
import { TASK_KINDS, type TaskKind } from "../sim/tasks.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: "data/sim-demos" },
    episodes: { type: "string", default: "200" },
    "seed-start": { type: "string", default: "10000" },
    size: { type: "string", default: "56" },
    kinds: { type: "string", default: TASK_KINDS.join(",") },
    noise: { type: "string", default: "0" },
    lighting: { type: "boolean", default: false },
    perturb: { type: "string", default: "0" },
    "early-close": { type: "string", default: "0" },
    "no-paraphrase": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});

function number(name: string, text: string | undefined): number {
  const n = Number(text);
  if (text === undefined || !Number.isFinite(n) || n < 0) {
    console.error(`--${name} must be a non-negative number`);
    process.exit(2);
  }
  return n;
}

const kinds = (values.kinds ?? "").split(",").map((k) => k.trim());
const unknown = kinds.filter((k) => !(TASK_KINDS as readonly string[]).includes(k));
if (unknown.length > 0) {
  console.error(`unknown task kinds: ${unknown.join(", ")} (known: ${TASK_KINDS.join(", ")})`);
  process.exit(2);
}

const started = performance.now();
const metadata = await writeDemos({
  out: values.out ?? "data/sim-demos",
  episodes: number("episodes", values.episodes),
  seedStart: number("seed-start", values["seed-start"]),
  size: number("size", values.size),
  kinds: kinds as TaskKind[],
  paraphrase: !values["no-paraphrase"],
  noise: number("noise", values.noise),
  lighting: values.lighting ?? false,
  perturb: number("perturb", values.perturb),
  earlyClose: number("early-close", values["early-close"]),
  onEpisode: ({ index, total }) => {
    if (!values.quiet && (index + 1) % 50 === 0) console.error(`${index + 1}/${total} episodes`);
  },
});
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `${metadata.num_trajectories} episodes, ${metadata.num_transitions} transitions, ` +
    `${metadata.skipped_failures} failures skipped, frames ${metadata.frame_size.join("x")}, ` +
    `${seconds} s -> ${values.out}`,
);
