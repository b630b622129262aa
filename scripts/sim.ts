/**
 * Runs episodes of the simulated tabletop with the scripted expert (locally) or against a
 * running server through any of its protocols, and reports success, steps, latency and safety.
 *
 *   npm run sim -- --episodes 5 --via expert
 *   npm run sim -- --episodes 5 --task pick --via rest|act|stream|openpi|all [--url URL --key KEY]
 *
 * The key defaults to VLA_API_KEY, else DATA_DIR/demo-key (written by the first embedded start).
 * See docs/sim.md ("Running episodes").
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { type LoopReport, runEpisodes } from "../sim/closed-loop.ts";
import { expertPolicy, type Policy } from "../sim/episode.ts";
import { protocolPolicy, sendEpisodeFeedback } from "../sim/protocols.ts";
import { type SafetyReport, safetyScenario } from "../sim/safety-scenario.ts";
import { type CallRecord, InferenceError, PROTOCOLS, type Protocol } from "../sim/server-policy.ts";
import { parseInstruction, TASK_KINDS, type TaskKind } from "../sim/tasks.ts";

/**
 * The model asked when --model is not given: the trained tabletop policy's chunk head (docs/sim.md,
 * "Training a policy"). /act cannot name a model: it uses the key's (the first-run demo key is bound
 * to this same model, DEMO_KEY_MODEL), else the server's default.
 */
const DEFAULT_MODEL: string | undefined = "tabletop-policy-chunk";

const VIA = ["expert", ...PROTOCOLS, "all"] as const;
/** --via when not given: REST against the local server with the first-run demo key (`--via expert` needs no server). */
const DEFAULT_VIA: (typeof VIA)[number] = "rest";

const { values } = parseArgs({
  options: {
    episodes: { type: "string", default: "5" },
    "seed-start": { type: "string", default: "0" },
    task: { type: "string", default: "pick" },
    instruction: { type: "string" },
    paraphrase: { type: "boolean", default: false },
    via: { type: "string", default: DEFAULT_VIA },
    url: { type: "string", default: "http://127.0.0.1:8000" },
    key: { type: "string" },
    model: { type: "string" },
    "unnorm-key": { type: "string" },
    "robot-id": { type: "string", default: "sim-arm" },
    "execute-steps": { type: "string" },
    feedback: { type: "boolean", default: false },
    "safety-profile": { type: "string" },
    "admin-key": { type: "string" },
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

/** The first-run demo key (src/modules/api-keys/bootstrap.ts), from DATA_DIR as src/config.ts resolves it. */
function demoKey(): string | undefined {
  try {
    return (
      readFileSync(path.join(path.resolve(process.env.DATA_DIR ?? "./data"), "demo-key"), "utf8").trim() || undefined
    );
  } catch {
    return undefined;
  }
}

const via = values.via as (typeof VIA)[number];
if (!VIA.includes(via)) fail(`--via must be one of ${VIA.join(", ")}`);
if (!(TASK_KINDS as readonly string[]).includes(values.task ?? "")) {
  fail(`--task must be one of ${TASK_KINDS.join(", ")}`);
}
if (values.instruction !== undefined) {
  const parsed = parseInstruction(values.instruction);
  if (!parsed.ok) fail(`--instruction: ${parsed.reason}`);
}
const noise = Number(values.noise);
if (!Number.isFinite(noise) || noise < 0) fail("--noise must be a non-negative number");
/**
 * Chunk models: rows of each chunk executed before asking again. 2 by default: a chunk's later rows
 * are open-loop predictions, and a grasp needs closed-loop precision (the tabletop chunk policy
 * picks 99-100 % of held-out seeds executing 1 or 2 rows, 93 % at 4, 47 % executing all 8).
 */
const DEFAULT_EXECUTE_STEPS = 2;
const executeSteps =
  values["execute-steps"] === undefined ? DEFAULT_EXECUTE_STEPS : count("execute-steps", values["execute-steps"]);
if (executeSteps === 0) fail("--execute-steps must be at least 1");
if (via === "all" && values["safety-profile"] !== undefined) fail("--safety-profile needs --via rest or stream");
if (via === "expert" && (values.feedback || values["safety-profile"] !== undefined)) {
  fail("--feedback and --safety-profile need a server: use --via rest, act, stream or openpi");
}

type Run = { via: string; report: LoopReport; feedback: number | null; safety_profile: SafetyReport | null };

const vias: readonly (typeof VIA)[number][] = via === "all" ? PROTOCOLS : [via];
const episodes = count("episodes", values.episodes);
const seedStart = count("seed-start", values["seed-start"]);

async function runVia(v: (typeof VIA)[number], gif: string | undefined): Promise<Run> {
  let policy: Policy = expertPolicy;
  let calls: CallRecord[] | undefined;
  let beforeEpisode: Parameters<typeof runEpisodes>[1]["beforeEpisode"];
  let afterEpisode: Parameters<typeof runEpisodes>[1]["afterEpisode"];
  let safety: SafetyReport | null = null;
  let feedbackSent = 0;
  let restoreProfile: (() => Promise<void>) | undefined;
  if (v !== "expert" && v !== "all") {
    const protocol: Protocol = v;
    const key = values.key ?? process.env.VLA_API_KEY ?? demoKey();
    if (!key) {
      fail(
        `--via ${v} needs --key (or VLA_API_KEY): the demo key of the first embedded start (DATA_DIR/demo-key), or any key with the inference scope`,
      );
    }
    const model = values.model ?? DEFAULT_MODEL;
    if (protocol === "act" && values.model !== undefined && !values.json) {
      console.error(`note: /act names no model; it serves the key's model, else the server's default (not ${model})`);
    }
    const url = values.url ?? "http://127.0.0.1:8000";
    const robotId = values["robot-id"] ?? "sim-arm";
    const server = protocolPolicy(protocol, {
      url,
      key,
      robotId,
      ...(model !== undefined ? { model } : {}),
      ...(values["unnorm-key"] ? { unnormKey: values["unnorm-key"] } : {}),
      executeSteps,
      onWait: (s) => console.error(`429: waiting ${s} s (Retry-After)`),
    });
    policy = server.policy;
    calls = server.calls;
    let scenario: ReturnType<typeof safetyScenario> | undefined;
    if (values["safety-profile"] !== undefined) {
      if (protocol !== "rest" && protocol !== "stream") {
        fail(
          "--safety-profile needs --via rest or stream: /act and openpi carry no robot state, so the server cannot check the workspace",
        );
      }
      const adminKey = values["admin-key"] ?? process.env.VLA_ADMIN_KEY;
      if (!adminKey) {
        fail(
          "--safety-profile needs --admin-key (or VLA_ADMIN_KEY): a key of the same customer with the admin scope (profiles are set by the owner or an admin key)",
        );
      }
      try {
        scenario = safetyScenario({ url, key, adminKey, robotId, profile: values["safety-profile"] }, server.calls);
      } catch (e) {
        fail(e instanceof Error ? e.message : String(e));
      }
      safety = scenario.report;
      restoreProfile = scenario.restore;
    }
    beforeEpisode = async (setup) => {
      await scenario?.before(setup);
      await server.beginEpisode(setup.instruction);
    };
    afterEpisode = async (result) => {
      const ids = await server.endEpisode();
      await scenario?.after(result);
      const last = ids.at(-1);
      if (values.feedback && last !== undefined) {
        feedbackSent += (await sendEpisodeFeedback({ url, key }, last, result)).length;
      }
    };
  }
  let report: LoopReport;
  try {
    report = await runEpisodes(
      policy,
      {
        episodes,
        seedStart,
        ...(values.instruction !== undefined ? { instruction: values.instruction } : { kind: values.task as TaskKind }),
        paraphrase: values.paraphrase ?? false,
        noise,
        lighting: values.lighting ?? false,
        ...(gif !== undefined ? { gif } : {}),
        ...(beforeEpisode ? { beforeEpisode } : {}),
        ...(afterEpisode ? { afterEpisode } : {}),
        onEpisode: (r, i) => {
          if (!values.json) {
            console.log(
              `${v} episode ${i + 1}/${episodes} seed ${r.seed}: ${r.success ? "success" : "failure"} in ${r.steps} steps  "${r.instruction}"`,
            );
          }
        },
      },
      calls,
    );
  } finally {
    await restoreProfile?.();
  }
  return { via: v, report, feedback: values.feedback ? feedbackSent : null, safety_profile: safety };
}

function printRun({ via: v, report, feedback, safety_profile: safety }: Run): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  console.log(
    `\nvia ${v}: success ${pct(report.successRate)} of ${report.episodes.length}, mean ${report.meanSteps.toFixed(1)} steps`,
  );
  if (report.latency) {
    console.log(
      `latency (client round trip) p50 ${report.latency.p50.toFixed(1)} ms, p99 ${report.latency.p99.toFixed(1)} ms over ${report.latency.n} calls`,
    );
  }
  if (report.serverLatency) {
    console.log(
      `server time p50 ${report.serverLatency.p50.toFixed(1)} ms, p99 ${report.serverLatency.p99.toFixed(1)} ms`,
    );
  }
  if (Object.keys(report.safety).length > 0) {
    console.log(
      `safety verdicts: ${Object.entries(report.safety)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ")}`,
    );
  }
  if (feedback !== null) console.log(`feedback: ${feedback} records sent (on each episode's last inference)`);
  if (safety) {
    const boxes = safety.episodes.filter((e) => e.outside > 0).length;
    console.log(
      `safety profile ${safety.profile} on robot ${safety.robotId}: ${safety.clampedCalls} actions clamped, ${safety.clampedAtBoundary} of them at the workspace boundary; ` +
        (safety.neverOutside
          ? `the end effector never left the allowed box (${safety.episodes.reduce((a, e) => a + e.positions, 0)} positions checked)`
          : `LEFT THE ALLOWED BOX in ${boxes} episodes`),
    );
  }
  if (report.gif) console.log(`first episode: ${report.gif}`);
}

const runs: Run[] = [];
try {
  for (const [i, v] of vias.entries()) {
    // One GIF: the first protocol's first episode.
    runs.push(await runVia(v, i === 0 && !values["no-gif"] ? (values.gif ?? "data/sim/episode.gif") : undefined));
  }
} catch (e) {
  if (e instanceof InferenceError) fail(e.message);
  throw e;
}

if (values.json) {
  console.log(JSON.stringify(via === "all" ? { runs } : runs[0], (_k, x) => (x === undefined ? null : x), 2));
} else {
  for (const run of runs) printRun(run);
  if (runs.length > 1) {
    console.log("\nprotocol  success  mean steps  p50 ms  p99 ms  safety");
    for (const { via: v, report } of runs) {
      const safety = Object.entries(report.safety)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ");
      console.log(
        `${v.padEnd(8)}  ${(100 * report.successRate).toFixed(1).padStart(5)} %  ${report.meanSteps.toFixed(1).padStart(10)}  ${(report.latency?.p50 ?? Number.NaN).toFixed(1).padStart(6)}  ${(report.latency?.p99 ?? Number.NaN).toFixed(1).padStart(6)}  ${safety}`,
      );
    }
  }
}
