/**
 * Micro-benchmark of the safety evaluator on one 7-D action, in process.
 *
 *   npx node bench/safety.bench.ts            (ITERATIONS=200000 by default)
 *
 * Cases (profile with two keep-out zones, robot_state with a position, a previous action,
 * so every rule runs; the OOD classifier uses models/mock-openvla-7b bridge_orig statistics):
 *   1. rules only (`evaluateSync`), an action that passes;
 *   2. rules + OOD classifier (`evaluate`, async), an action that passes: the figure the target
 *      (median <= 20 us) is about;
 *   3. rules + OOD, an action that leaves the workspace and over-opens the gripper, clamped
 *      (clamping + re-verification);
 *   4. rules + OOD, an 8-step chunk that passes;
 *   5. rules + the OOD classifier behind a Promise (as a remote/async classifier would answer), so the
 *      timeout timer (setTimeout/clearTimeout) and Promise.race are paid;
 *   6. the whole gate as the inference path calls it (`SafetyService.admit` + `check`, in-process
 *      stores, a cached custom profile, metrics, last-seen): what safety adds to a request.
 * Each call is timed alone with process.hrtime.bigint() (adds ~0.05 us); warm-up first.
 * Results go to stdout and bench/results/safety-latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { loadDatasetStatistics } from "../src/modules/models/dataset-statistics.ts";
import { MemoryEstopRegistry } from "../src/modules/safety/estop.ts";
import { type ClassifierOptions, evaluate, evaluateSync } from "../src/modules/safety/evaluator.ts";
import { momentsFromDatasetStatistics, OodClassifier } from "../src/modules/safety/ood-classifier.ts";
import { resolveProfile } from "../src/modules/safety/profile.ts";
import { MemoryRobotStateStore } from "../src/modules/safety/robot-state-store.ts";
import { createSafetyMetrics } from "../src/modules/safety/safety.metrics.ts";
import type { SafetyRepo } from "../src/modules/safety/safety.repo.ts";
import { SafetyService } from "../src/modules/safety/safety.service.ts";
import type { EvaluationInput } from "../src/modules/safety/types.ts";
import type { InvalidationBus } from "../src/platform/invalidation.ts";

const ITERATIONS = Number(process.env.ITERATIONS ?? 200_000);
const WARMUP = Math.min(50_000, ITERATIONS);

const resolved = resolveProfile({
  keep_out_zones: [
    { type: "box", min: [0.3, -0.1, 0.0], max: [0.5, 0.1, 0.2] },
    { type: "sphere", center: [0.0, 0.3, 0.3], radius: 0.1 },
  ],
});
if (!resolved.ok) throw new Error("profile");
const profile = resolved.profile;
const statsFile = fileURLToPath(new URL("../models/mock-openvla-7b/dataset_statistics.json", import.meta.url));
const ood = new OodClassifier({ stats: momentsFromDatasetStatistics(loadDatasetStatistics(statsFile)) });
const options: ClassifierOptions = { classifiers: [ood], unnormKey: "bridge_orig", timeoutMs: 50 };

const state = { ee_position: [0.1, -0.05, 0.25], gripper: 1 };
const passing: EvaluationInput = {
  action: [0.004, -0.006, 0.003, 0.01, -0.02, 0.03, 1],
  profile,
  robotState: state,
  previousAction: [0.003, -0.005, 0.002, 0.01, -0.01, 0.02, 1],
};
// Within the OOD bound (~2 std) but past the workspace edge and the gripper range: clamped.
const clamping: EvaluationInput = {
  ...passing,
  robotState: { ee_position: [0.49, -0.05, 0.25], gripper: 1 },
  action: [0.02, -0.006, 0.003, 0.01, -0.02, 0.03, 1.04],
};
const chunk: EvaluationInput = {
  ...passing,
  action: Array.from({ length: 8 }, (_, i) => [0.002 + i * 0.0005, -0.003, 0.002, 0.01, -0.01, 0.02, 1]),
};
// sanity: the cases do what they claim
if (evaluateSync(passing).status !== "pass") throw new Error("passing case does not pass");
const c = await evaluate(clamping, options);
if (c.status !== "clamped") throw new Error(`clamping case: ${c.status} ${JSON.stringify(c.violations)}`);
if ((await evaluate(chunk, options)).status !== "pass") throw new Error("chunk case does not pass");

interface Stats {
  readonly median_us: number;
  readonly p99_us: number;
  readonly mean_us: number;
  readonly iterations: number;
}

function summarise(samples: Float64Array): Stats {
  const sorted = samples.slice().sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  let sum = 0;
  for (const x of samples) sum += x;
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { median_us: r(at(0.5)), p99_us: r(at(0.99)), mean_us: r(sum / samples.length), iterations: samples.length };
}

/** Results feed a sink printed at the end, so no call can be optimised away. */
let sink = 0;

function benchSync(input: EvaluationInput): Stats {
  for (let i = 0; i < WARMUP; i++) evaluateSync(input);
  const samples = new Float64Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    sink += evaluateSync(input).violations.length;
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return summarise(samples);
}

const asyncOptions: ClassifierOptions = {
  ...options,
  classifiers: [
    { name: "ood-async", classify: async (ctx: Parameters<OodClassifier["classify"]>[0]) => ood.classify(ctx) },
  ],
};

async function benchAsync(input: EvaluationInput, opts: ClassifierOptions = options): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) await evaluate(input, opts);
  const samples = new Float64Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    sink += (await evaluate(input, opts)).violations.length;
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return summarise(samples);
}

// The whole gate, in-process stores (what the embedded default runs).
const gate = new SafetyService({
  repo: { getProfile: async () => ({ keep_out_zones: profile.keep_out_zones }) } as unknown as SafetyRepo,
  estops: new MemoryEstopRegistry(),
  states: new MemoryRobotStateStore(),
  incidents: { push: () => {} },
  lastSeen: { push: () => {} },
  metrics: createSafetyMetrics(new Registry()),
  invalidation: { on: () => {}, onReset: () => {}, publish: async () => {} } as unknown as InvalidationBus,
  statistics: () => loadDatasetStatistics(statsFile),
  classifiers: ["ood"],
  oodK: 5,
  classifierTimeoutMs: 50,
  classifierFailMode: "closed",
  profileCacheMs: 60_000,
  previousActionPeriods: 3,
  now: Date.now,
});
const gateCheck = async () => {
  const admission = await gate.admit("customer-1", "arm-1", true);
  const out = await gate.check({
    customerId: "customer-1",
    robotId: "arm-1",
    inferenceId: "00000000-0000-4000-8000-000000000000",
    modelId: "mock-openvla-7b",
    unnormKey: "bridge_orig",
    decoded: { action: passing.action as number[] },
    robotState: state,
    admission,
  });
  return out.safety.violations.length;
};
if (
  (
    await gate.check({
      customerId: "c",
      robotId: "r",
      inferenceId: "i",
      modelId: "m",
      unnormKey: "bridge_orig",
      decoded: { action: passing.action as number[] },
      robotState: state,
    })
  ).safety.status !== "pass"
) {
  throw new Error("gate case does not pass");
}

async function benchGate(): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) await gateCheck();
  const samples = new Float64Array(ITERATIONS);
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    sink += await gateCheck();
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return summarise(samples);
}

const results = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? "unknown",
  loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  rules_only_pass: benchSync(passing),
  rules_and_ood_pass: await benchAsync(passing),
  rules_and_ood_clamped: await benchAsync(clamping),
  rules_and_ood_chunk8_pass: await benchAsync(chunk),
  rules_and_async_ood_pass: await benchAsync(passing, asyncOptions),
  whole_gate_admit_and_check: await benchGate(),
};
console.log(JSON.stringify(results, null, 2));
console.log(`(sink ${sink})`);
const target = results.rules_and_ood_pass.median_us <= 20;
console.log(`target (median <= 20 us, rules + OOD, one action): ${target ? "met" : "NOT met"}`);
const dir = fileURLToPath(new URL("./results/", import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}safety-latest.json`, `${JSON.stringify(results, null, 2)}\n`);
