import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type InferenceLogEntry, InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import { feedback } from "../../src/platform/db/schema/index.ts";
import { owner } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { createExperiment, split } from "./helpers.ts";

let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildInferenceApp();
});
afterAll(async () => {
  await t?.close();
});

// Inside the experiments' time span (they are created now): the results read only that span.
const AT = new Date().toISOString();

function log(
  customerId: string,
  experimentId: string | null,
  variant: string | null,
  model: string,
  totalMs: number,
  safety: string | null,
  createdAt = AT,
): InferenceLogEntry {
  return {
    id: randomUUID(),
    createdAt,
    customerId,
    apiKeyId: null,
    userId: null,
    model,
    backend: "mock",
    robotId: "arm-1",
    instruction: null,
    instructionSha256: null,
    imageSha256: null,
    action: safety === null ? null : [0, 0, 0, 0, 0, 0, 1],
    actionChunk: null,
    unnormKey: "bridge_orig",
    status: safety === null ? "error" : "ok",
    errorCode: safety === null ? "inference_timeout" : null,
    preprocessMs: null,
    queueMs: null,
    modelMs: null,
    totalMs,
    source: "rest",
    safetyStatus: safety,
    experimentId,
    variant,
  };
}

describe("GET /v1/experiments/{id}/results", () => {
  it("compares the variants on seeded logs and feedback (figures checked by hand and against SciPy)", async () => {
    const c = t.customerId;
    const e = (
      await createExperiment(
        t.app,
        c,
        // Per-request draws: the unit is the inference (robot assignment: the next test).
        split(
          [
            { name: "control", model: "mock-openvla-7b", weight: 1 },
            { name: "candidate", model: "demo-vla-tiny", weight: 1 },
          ],
          { assignment: "request" },
        ),
      )
    ).json();
    const A = "mock-openvla-7b";
    const B = "demo-vla-tiny";
    const ctl = [
      log(c, e.id, "control", A, 10, "pass"),
      log(c, e.id, "control", A, 20, "pass"),
      log(c, e.id, "control", A, 30, "clamped"),
      log(c, e.id, "control", A, 40, "pass"),
      log(c, e.id, "control", A, 500, null),
    ];
    const cand = [
      log(c, e.id, "candidate", B, 5, "pass"),
      log(c, e.id, "candidate", B, 15, "rejected"),
      log(c, e.id, "candidate", B, 25, "pass"),
      log(c, e.id, "candidate", B, 35, "pass"),
    ];
    // Outside the experiment: never counted.
    const other = log(c, null, null, A, 1, "pass");
    // Tagged, but 40 days before the experiment existed: outside its time span, whose partitions are not read.
    const early = new Date(Date.parse(e.created_at) - 40 * 86_400_000).toISOString();
    const stray = log(c, e.id, "control", A, 1, "pass", early);
    await new InferenceLogsRepo(t.database.db).insertMany([...ctl, ...cand, other, stray]);

    type Fb = { on: InferenceLogEntry; type: string; rating?: number; errors?: [number, number, number] };
    const fb = (on: InferenceLogEntry, type: string, rating?: number, errors?: [number, number, number]): Fb => ({
      on,
      type,
      ...(rating === undefined ? {} : { rating }),
      ...(errors === undefined ? {} : { errors }),
    });
    const [c1, c2, c3, c4, c5] = ctl as [
      InferenceLogEntry,
      InferenceLogEntry,
      InferenceLogEntry,
      InferenceLogEntry,
      InferenceLogEntry,
    ];
    const [d1, d2, d3, d4] = cand as [InferenceLogEntry, InferenceLogEntry, InferenceLogEntry, InferenceLogEntry];
    const rows: Fb[] = [
      // control success ratings 3,2,4,3,2,3; candidate 5,4,4,3,5
      fb(c1, "success", 3),
      fb(c2, "success", 2),
      fb(c3, "success", 4),
      fb(c4, "success", 3),
      fb(c1, "success", 2),
      fb(c2, "success", 3),
      fb(d1, "success", 5),
      fb(d2, "success", 4),
      fb(d3, "success", 4),
      fb(d4, "success", 3),
      fb(d1, "success", 5),
      // outcomes: control c3 succeeds (4), c1/c2 (2.5), c4 (3) and c5 (a failure report) fail: 1 of 5;
      // candidate d1 (5), d3 (4) succeed, d2 (4 but a failure report) and d4 (3) fail: 2 of 4.
      fb(c5, "failure"),
      fb(d2, "failure"),
      fb(c1, "safety", 4),
      fb(d1, "correction", undefined, [0.1, 0.2, 0.5]),
      fb(d3, "correction", undefined, [0.3, 0.4, 0]),
      fb(other, "success", 1),
      fb(other, "failure"),
    ];
    await t.database.db.insert(feedback).values(
      rows.map((r) => ({
        customerId: c,
        inferenceId: r.on.id,
        inferenceCreatedAt: new Date(AT),
        robotId: "arm-1",
        model: r.on.model,
        type: r.type,
        rating: r.rating ?? null,
        failureType: r.type === "failure" ? "grasp_failed" : null,
        description: r.type === "failure" ? "dropped it" : null,
        errorTranslation: r.errors?.[0] ?? null,
        errorRotation: r.errors?.[1] ?? null,
        errorGripper: r.errors?.[2] ?? null,
      })),
    );

    const res = await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}/results`, headers: owner(c) });
    expect(res.statusCode, res.body).toBe(200);
    const r = res.json();
    expect(r.control).toBe("control");
    const [control, candidate] = r.variants;
    expect(control).toMatchObject({
      name: "control",
      requests: 5,
      errors: 1,
      error_rate: 0.2,
      latency_ms: { mean: 25, p50: 25, p95: 38.5 },
      safety: { pass: 3, clamped: 1, rejected: 0, emergency_stop: 0, not_evaluated: 0 },
      feedback: {
        rated: 6,
        safety_rated: 1,
        mean_safety_rating: 4,
        outcomes: 5,
        successes: 1,
        success_rate: 0.2,
        corrections: 0,
        correction_magnitude: { translation: null, rotation: null, gripper: null },
      },
      vs_control: null,
    });
    expect(control.feedback.mean_rating).toBeCloseTo(17 / 6, 12);
    expect(candidate).toMatchObject({
      name: "candidate",
      requests: 4,
      errors: 0,
      error_rate: 0,
      latency_ms: { mean: 20, p50: 20, p95: 33.5 },
      safety: { pass: 3, clamped: 0, rejected: 1, emergency_stop: 0, not_evaluated: 0 },
      feedback: {
        rated: 5,
        mean_rating: 4.2,
        safety_rated: 0,
        mean_safety_rating: null,
        outcomes: 4,
        successes: 2,
        success_rate: 0.5,
        corrections: 2,
      },
    });
    const cm = candidate.feedback.correction_magnitude;
    expect(cm.translation).toBeCloseTo(0.2, 12);
    expect(cm.rotation).toBeCloseTo(0.3, 12);
    expect(cm.gripper).toBeCloseTo(0.25, 12);

    // The rating test's unit is the inference: c1 (3, 2) and c2 (2, 3) count once each at 2.5, d1 (5, 5) at 5.
    // SciPy: ttest_ind([5,4,4,3], [2.5,2.5,4,3], equal_var=False) -> t 1.8516402, df 5.88, p 0.1145315.
    const rating = candidate.vs_control.rating;
    expect(rating).toMatchObject({ test: "welch_t", unit: "inference", n_control: 4, n_variant: 4 });
    expect(rating.difference).toBeCloseTo(4 - 3, 12);
    expect(rating.statistic).toBeCloseTo(1.851640199545103, 9);
    expect(rating.df).toBeCloseTo(5.88, 9);
    expect(rating.p_value).toBeCloseTo(0.11453147911050253, 8);
    // Pooled z: (0.5 - 0.2) / sqrt(1/3 * 2/3 * (1/5 + 1/4)) = 0.9486833; two-sided p 0.3427817.
    const success = candidate.vs_control.success_rate;
    expect(success).toMatchObject({
      test: "two_proportion_z",
      unit: "inference",
      n_control: 5,
      n_variant: 4,
      df: null,
    });
    expect(success.difference).toBeCloseTo(0.3, 12);
    expect(success.statistic).toBeCloseTo(0.9486832980505138, 9);
    expect(success.p_value).toBeCloseTo(0.34278171114791145, 6);
  });

  it("robot assignment: the tests count robots (cluster-robust t), not their many alike inferences", async () => {
    const other = await newKey(t);
    const c = other.customerId;
    const e = (
      await createExperiment(
        t.app,
        c,
        split([
          { name: "control", model: "mock-openvla-7b", weight: 1 },
          { name: "candidate", model: "demo-vla-tiny", weight: 1 },
        ]),
      )
    ).json();
    expect(e.assignment).toBe("robot_id");
    // Three robots a side, ten inferences each, every one rated alike within a robot: control
    // robots rate 2, 4, 3 (only the 4s succeed), candidate robots 3, 5, 4 (the 5s and 4s succeed).
    const robots: [string, string, number][] = [
      ["control", "r-a", 2],
      ["control", "r-b", 4],
      ["control", "r-c", 3],
      ["candidate", "r-d", 3],
      ["candidate", "r-e", 5],
      ["candidate", "r-f", 4],
    ];
    const logs: InferenceLogEntry[] = [];
    const ratings: { on: InferenceLogEntry; rating: number }[] = [];
    for (const [variant, robotId, rating] of robots) {
      for (let i = 0; i < 10; i++) {
        const row = { ...log(c, e.id, variant, "mock-openvla-7b", 10, "pass"), robotId };
        logs.push(row);
        ratings.push({ on: row, rating });
      }
    }
    await new InferenceLogsRepo(t.database.db).insertMany(logs);
    await t.database.db.insert(feedback).values(
      ratings.map((r) => ({
        customerId: c,
        inferenceId: r.on.id,
        inferenceCreatedAt: new Date(AT),
        robotId: r.on.robotId,
        model: r.on.model,
        type: "success",
        rating: r.rating,
      })),
    );
    const res = await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}/results`, headers: owner(c) });
    expect(res.statusCode, res.body).toBe(200);
    const candidate = res.json().variants[1];
    expect(candidate.feedback).toMatchObject({ rated: 30, mean_rating: 4, outcomes: 30, successes: 20 });
    // Equal robots: Welch on the robot means, SciPy ttest_ind([2, 4, 3], [3, 5, 4], equal_var=False):
    // t 1.2247449, df 4, p 0.2878641 (per inference, n 30 a side, it would be t 4.66, p < 0.0001).
    const rating = candidate.vs_control.rating;
    expect(rating).toMatchObject({ test: "cluster_robust_t", unit: "robot", n_control: 3, n_variant: 3 });
    expect(rating.difference).toBeCloseTo(1, 12);
    expect(rating.statistic).toBeCloseTo(1.224744871391589, 9);
    expect(rating.df).toBeCloseTo(4, 9);
    expect(rating.p_value).toBeCloseTo(0.2878641347266, 6);
    // Success per robot 0, 1, 0 vs 0, 1, 1: ttest_ind([0, 1, 0], [0, 1, 1], equal_var=False): t 0.7071068, df 4,
    // p 0.5185185 (the pooled z-test over 30 inferences a side: z 2.58, p 0.0098).
    const success = candidate.vs_control.success_rate;
    expect(success).toMatchObject({ test: "cluster_robust_t", unit: "robot", n_control: 3, n_variant: 3 });
    expect(success.difference).toBeCloseTo(1 / 3, 12);
    expect(success.statistic).toBeCloseTo(Math.SQRT1_2, 9);
    expect(success.df).toBeCloseTo(4, 9);
    expect(success.p_value).toBeCloseTo(0.5185185185, 6);
  });

  it("a variant without data has zeros and no test", async () => {
    const other = await newKey(t);
    const e = (
      await createExperiment(
        t.app,
        other.customerId,
        split([
          { name: "a", model: "mock-openvla-7b", weight: 1 },
          { name: "b", model: "demo-vla-tiny", weight: 1 },
        ]),
      )
    ).json();
    const r = (
      await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}/results`, headers: owner(other.customerId) })
    ).json();
    expect(r.variants[1]).toMatchObject({
      requests: 0,
      error_rate: null,
      latency_ms: { mean: null, p50: null, p95: null },
      feedback: { rated: 0, mean_rating: null, outcomes: 0, success_rate: null },
      vs_control: {
        rating: { test: null, n_control: 0, n_variant: 0, p_value: null },
        success_rate: { test: null, p_value: null },
      },
    });
  });
});
