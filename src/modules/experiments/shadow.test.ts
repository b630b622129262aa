import { describe, expect, it } from "vitest";
import type { Principal } from "../../platform/auth.ts";
import type { ExperimentRow } from "../../platform/db/schema/index.ts";
import { InvalidationBus } from "../../platform/invalidation.ts";
import type { RedisHandle } from "../../platform/redis.ts";
import type { InferenceEngine, InferenceRequest, InferenceResult } from "../inference/inference.service.ts";
import { InferenceRunner } from "../inference/inference-runner.ts";
import type { ExperimentsRepo, ShadowEntry } from "./experiments.repo.ts";
import { ExperimentsService } from "./experiments.service.ts";
import { type ShadowOutcome, ShadowQueue } from "./shadow-queue.ts";

const CUSTOMER = "8f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f";
const principal: Principal = {
  kind: "api_key",
  customerId: CUSTOMER,
  userId: null,
  apiKeyId: null,
  scopes: ["inference"],
  isSuperuser: false,
  tier: "enterprise",
};

const SERVED = [0.01, 0.02, 0.03, 0.1, 0.2, 0.3, 1];
const CANDIDATE = [0.04, 0.06, 0.03, 0.1, 0.2, 0.0, 0.5];

/** An engine whose candidate model answers as told: at once, or never. */
function fakeEngine(candidate: "answers" | "never"): InferenceEngine {
  const result = (req: InferenceRequest, action: number[]) =>
    ({
      model: req.model ?? "primary",
      backend: "fake",
      action,
      unnormKey: "k",
      imageSha256: "x",
      image: { format: "array", bytes: 0 },
      timing: { preprocess_ms: 0, queue_ms: 0, model_ms: 0 },
    }) as unknown as InferenceResult;
  return {
    defaultModel: "primary",
    modelIds: () => ["primary", "cand"],
    serves: (id: string) => ["primary", "cand"].includes(id),
    infer: (req: InferenceRequest) => {
      if (req.model === "cand") {
        return candidate === "never" ? new Promise<InferenceResult>(() => {}) : Promise.resolve(result(req, CANDIDATE));
      }
      return Promise.resolve(result(req, SERVED));
    },
  } as unknown as InferenceEngine;
}

const shadowRow = {
  id: "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
  customerId: CUSTOMER,
  mode: "shadow",
  candidateModel: "cand",
  sampleRate: 1,
  startsAt: null,
  endsAt: null,
  stoppedAt: null,
} as unknown as ExperimentRow;

function setup(candidate: "answers" | "never", max: number) {
  const engine = fakeEngine(candidate);
  const rows: ShadowEntry[] = [];
  const counts: Record<ShadowOutcome, number> = { run: 0, error: 0, dropped: 0 };
  const redis = { keyPrefix: "t:", client: null, duplicate: () => null } as unknown as RedisHandle;
  const service = new ExperimentsService({
    repo: { active: async () => [shadowRow] } as unknown as ExperimentsRepo,
    engine,
    safety: undefined,
    invalidation: new InvalidationBus(redis),
    cacheMs: 60_000,
    now: Date.now,
    sink: { push: (r) => rows.push(r) },
    queue: (run) => new ShadowQueue({ max, concurrency: 1, run, count: (o) => counts[o]++ }),
  });
  const runner = new InferenceRunner({ engine, sink: { push() {} }, logInstructions: false, experiments: service });
  const call = () =>
    runner.run(
      { principal, source: "rest", elapsedMs: () => 1 },
      {
        instruction: "Pick  up the block",
        robotId: "arm-1",
        image: { imageArray: { dtype: "|u1", shape: [2, 2, 3], data: new Uint8Array(12) } },
      },
    );
  return { service, rows, counts, call };
}

describe("split routing in the runner", () => {
  const splitRow = (variants: { name: string; model: string; weight: number }[]) =>
    ({
      id: "2d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
      customerId: CUSTOMER,
      mode: "split",
      assignment: "robot_id",
      variants,
      startsAt: null,
      endsAt: null,
      stoppedAt: null,
    }) as unknown as ExperimentRow;

  function router(row: ExperimentRow) {
    const asked: InferenceRequest[] = [];
    const engine = fakeEngine("answers");
    const spy = {
      ...engine,
      defaultModel: "primary",
      modelIds: engine.modelIds,
      serves: engine.serves,
      infer: (req: InferenceRequest) => {
        asked.push(req);
        return engine.infer(req);
      },
    } as unknown as InferenceEngine;
    const redis = { keyPrefix: "t:", client: null, duplicate: () => null } as unknown as RedisHandle;
    const service = new ExperimentsService({
      repo: { active: async () => [row] } as unknown as ExperimentsRepo,
      engine: spy,
      safety: undefined,
      invalidation: new InvalidationBus(redis),
      cacheMs: 60_000,
      now: Date.now,
      sink: { push() {} },
      queue: (run) => new ShadowQueue({ max: 1, concurrency: 1, run, count() {} }),
    });
    const runner = new InferenceRunner({
      engine: spy,
      sink: { push() {} },
      logInstructions: false,
      experiments: service,
    });
    const call = (p: Principal, input: { model?: string; unnormKey?: string } = {}) =>
      runner.run(
        { principal: p, source: "rest", elapsedMs: () => 1 },
        { instruction: "go", robotId: "arm-1", image: { imageBytes: new Uint8Array(4) }, ...input },
      );
    return { asked, call };
  }
  const keyed = (model: string | null, unnormKey: string | null): Principal => ({
    ...principal,
    keyDefaults: { robotId: null, model, unnormKey },
  });

  it("routes only when neither the request nor its API key names a model", async () => {
    const r = router(splitRow([{ name: "only", model: "cand", weight: 1 }]));
    expect((await r.call(principal)).experiment?.variant).toBe("only");
    expect(r.asked.at(-1)?.model).toBe("cand");
    expect((await r.call(principal, { model: "primary" })).experiment).toBeUndefined();
    expect(r.asked.at(-1)?.model).toBe("primary");
    expect((await r.call(keyed("primary", null))).experiment).toBeUndefined();
    expect(r.asked.at(-1)?.model).toBe("primary");
  });

  it("the key's unnorm_key belongs to the default model: kept for a variant of that model, dropped for another", async () => {
    const other = router(splitRow([{ name: "c", model: "cand", weight: 1 }]));
    await other.call(keyed(null, "bridge_orig"));
    expect(other.asked.at(-1)).toMatchObject({ model: "cand", unnormKey: undefined });
    // The request's own unnorm_key is passed on whatever the variant.
    await other.call(keyed(null, "bridge_orig"), { unnormKey: "mine" });
    expect(other.asked.at(-1)).toMatchObject({ model: "cand", unnormKey: "mine" });
    const same = router(splitRow([{ name: "p", model: "primary", weight: 1 }]));
    await same.call(keyed(null, "bridge_orig"));
    expect(same.asked.at(-1)).toMatchObject({ model: "primary", unnormKey: "bridge_orig" });
  });
});

describe("shadow traffic", () => {
  it("records the candidate's action, verdict and distances to the served action", async () => {
    const s = setup("answers", 10);
    const out = await s.call();
    expect(out.action).toEqual(SERVED);
    await s.service.queue.idle();
    expect(s.counts).toEqual({ run: 1, error: 0, dropped: 0 });
    expect(s.rows).toHaveLength(1);
    const r = s.rows[0] as ShadowEntry;
    expect(r).toMatchObject({
      experimentId: shadowRow.id,
      inferenceId: out.id,
      robotId: "arm-1",
      servedModel: "primary",
      candidateModel: "cand",
      servedAction: SERVED,
      candidateAction: CANDIDATE,
      candidateSafetyStatus: "not_evaluated", // no safety gate in this setup
      errorCode: null,
    });
    expect(r.instructionKey).toMatch(/^[0-9a-f]{64}$/);
    expect(r.translation).toBeCloseTo(Math.hypot(0.03, 0.04, 0), 12);
    expect(r.rotation).toBeCloseTo(0.3, 12);
    expect(r.gripper).toBeCloseTo(0.5, 12);
  });

  it("a candidate that never answers never holds up the served requests; a full queue drops and counts", async () => {
    const s = setup("never", 2);
    const answered: string[] = [];
    for (let i = 0; i < 8; i++) answered.push((await s.call()).id);
    // Let the queue start its first job (which then hangs forever), then serve more.
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 4; i++) answered.push((await s.call()).id);
    expect(new Set(answered).size).toBe(12);
    // One running (hung) and at most 2 waiting: the rest were dropped, and counted.
    expect(s.service.queue.active).toBe(1);
    expect(s.service.queue.waiting).toBe(2);
    expect(s.counts.dropped).toBe(12 - 3);
    expect(s.counts.run).toBe(0);
    expect(s.rows).toHaveLength(0);
    await s.service.queue.close(0);
  });
});
