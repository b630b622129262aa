/**
 * Runs episodes of the simulated tabletop with the scripted expert (locally) or against a
 * running server over REST (POST /v1/inference), and reports success, steps, latency and safety.
 *
 *   npm run sim -- --episodes 5 --via expert
 *   npm run sim -- --episodes 5 --task pick --via rest --url http://127.0.0.1:8000 --key vla_live_...
 *
 * See docs/sim.md ("Running episodes").
 */
import { parseArgs } from "node:util";
import { type LoopReport, runEpisodes } from "../sim/closed-loop.ts";
import { expertPolicy } from "../sim/episode.ts";
import { InferenceError, restPolicy } from "../sim/rest-policy.ts";
import { parseInstruction, TASK_KINDS, type TaskKind } from "../sim/tasks.ts";

const VIA = ["expert", "rest"] as const;

const { values } = parseArgs({
  options: {
    episodes: { type: "string", default: "5" },
    "seed-start": { type: "string", default: "0" },
    task: { type: "string", default: "pick" },
    instruction: { type: "string" },
    paraphrase: { type: "boolean", default: false },
    via: { type: "string", default: "expert" },
    url: { type: "string", default: "http://127.0.0.1:8000" },
    key: { type: "string" },
    model: { type: "string" },
    "unnorm-key": { type: "string" },
    "robot-id": { type: "string", default: "sim-arm" },
    noise: { type: "string", default: "0" },
    lighting: { type: "boolean", default: false },
    gif: { type: "string", default: "data/sim/episode.gif" },
    "no-gif": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function count(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} must be a non-negative integer`);
  return n;
}

const via = values.via as (typeof VIA)[number];
if (!VIA.includes(via)) fail(`--via must be one of ${VIA.join(", ")} (act, stream and openpi are not implemented yet)`);
if (!(TASK_KINDS as readonly string[]).includes(values.task ?? "")) {
  fail(`--task must be one of ${TASK_KINDS.join(", ")}`);
}
if (values.instruction !== undefined) {
  const parsed = parseInstruction(values.instruction);
  if (!parsed.ok) fail(`--instruction: ${parsed.reason}`);
}
const noise = Number(values.noise);
if (!Number.isFinite(noise) || noise < 0) fail("--noise must be a non-negative number");

let policy = expertPolicy;
let calls: Parameters<typeof runEpisodes>[2];
if (via === "rest") {
  const key = values.key ?? process.env.VLA_API_KEY;
  if (!key)
    fail(
      "--via rest needs --key (or VLA_API_KEY): the demo key npm start printed on its first run, or any key with the inference scope",
    );
  const rest = restPolicy({
    url: values.url ?? "http://127.0.0.1:8000",
    key,
    robotId: values["robot-id"] ?? "sim-arm",
    ...(values.model ? { model: values.model } : {}),
    ...(values["unnorm-key"] ? { unnormKey: values["unnorm-key"] } : {}),
    onWait: (s) => console.error(`429 quota_exceeded: waiting ${s} s (Retry-After)`),
  });
  policy = rest.policy;
  calls = rest.calls;
}

const episodes = count("episodes", values.episodes);
let report: LoopReport;
try {
  report = await runEpisodes(
    policy,
    {
      episodes,
      seedStart: count("seed-start", values["seed-start"]),
      ...(values.instruction !== undefined ? { instruction: values.instruction } : { kind: values.task as TaskKind }),
      paraphrase: values.paraphrase ?? false,
      noise,
      lighting: values.lighting ?? false,
      ...(values["no-gif"] ? {} : { gif: values.gif ?? "data/sim/episode.gif" }),
      onEpisode: (r, i) => {
        if (!values.json) {
          console.log(
            `episode ${i + 1}/${episodes} seed ${r.seed}: ${r.success ? "success" : "failure"} in ${r.steps} steps  "${r.instruction}"`,
          );
        }
      },
    },
    calls,
  );
} catch (e) {
  if (e instanceof InferenceError) fail(e.message);
  throw e;
}

if (values.json) {
  console.log(JSON.stringify({ via, ...report }, null, 2));
} else {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  console.log(
    `\nvia ${via}: success ${pct(report.successRate)} of ${report.episodes.length}, mean ${report.meanSteps.toFixed(1)} steps`,
  );
  if (report.latency) {
    console.log(
      `latency (client round trip) p50 ${report.latency.p50.toFixed(1)} ms, p99 ${report.latency.p99.toFixed(1)} ms over ${report.latency.n} calls`,
    );
  }
  if (report.serverLatency) {
    console.log(
      `server total_ms p50 ${report.serverLatency.p50.toFixed(1)} ms, p99 ${report.serverLatency.p99.toFixed(1)} ms`,
    );
  }
  if (Object.keys(report.safety).length > 0) {
    console.log(
      `safety verdicts: ${Object.entries(report.safety)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}`,
    );
  }
  if (report.gif) console.log(`first episode: ${report.gif}`);
}
