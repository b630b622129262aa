import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InferenceTestContext } from "../inference/helpers.ts";
import {
  buildFeedbackApp,
  expectProblem,
  flushLogs,
  type Json,
  jpeg,
  newKey,
  owner,
  post,
  seedInference,
  xKey,
} from "./helpers.ts";

/** POST /v1/feedback/*: storing, correction arithmetic, ownership, idempotency, fresh inferences. */
let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  // The log writer's timer never fires during these tests: a row stays buffered until a test
  // flushes it, so "feedback on a buffered row" does not race the timer on a loaded machine.
  t = await buildFeedbackApp({ BATCH_WRITER_FLUSH_MS: "60000" });
  img = (await jpeg(64, 64, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const infer = (key: string, extra: Json = {}) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: xKey(key),
    payload: { image: img, instruction: "pick", robot_id: "arm-1", unnorm_key: "bridge_orig", ...extra },
  });

describe("feedback routes", () => {
  it("stores each type with the inference's robot, model and source and the sender's key", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId, { robotId: "arm-7", model: "demo-vla-tiny", source: "act" });
    const success = await post(t, "success", xKey(c.key), { inference_id: id, rating: 4, comment: "ok" });
    expect(success.statusCode, success.body).toBe(201);
    expect(success.json()).toMatchObject({
      type: "success",
      inference_id: id,
      robot_id: "arm-7",
      model: "demo-vla-tiny",
      source: "act",
      api_key_id: c.keyId,
      user_id: null,
      rating: 4,
      comment: "ok",
      error: null,
      corrected_action: null,
    });
    const safety = await post(t, "safety", owner(c.customerId), {
      inference_id: id,
      rating: 1,
      observed_issue: "near_miss",
    });
    expect(safety.statusCode, safety.body).toBe(201);
    expect(safety.json()).toMatchObject({ type: "safety", rating: 1, observed_issue: "near_miss", api_key_id: null });
    const failure = await post(t, "failure", xKey(c.key), {
      inference_id: id,
      failure_type: "dropped_object",
      description: "slipped",
      severity: "high",
    });
    expect(failure.statusCode, failure.body).toBe(201);
    expect(failure.json()).toMatchObject({
      type: "failure",
      failure_type: "dropped_object",
      description: "slipped",
      severity: "high",
      rating: null,
    });
  });

  it("computes the correction error per part exactly (L2 of dims 0-2, 3-5, |dim 6|)", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId, { action: [1, 2, 3, 0.5, -0.5, 0, 0] });
    const res = await post(t, "correction", xKey(c.key), {
      inference_id: id,
      corrected_action: [4, 6, 3, 0.5, -0.5, 1, 1],
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      type: "correction",
      corrected_action: [4, 6, 3, 0.5, -0.5, 1, 1],
      model_action: [1, 2, 3, 0.5, -0.5, 0, 0],
      corrected_chunk: null,
      model_chunk: null,
      error: { translation: 5, rotation: 1, gripper: 1 },
    });
    // Stored as computed: the list shows the same figures.
    const list = await t.app.inject({ method: "GET", url: `/v1/feedback?inference_id=${id}`, headers: xKey(c.key) });
    expect((list.json() as { data: Json[] }).data[0]?.error).toEqual({ translation: 5, rotation: 1, gripper: 1 });
  });

  it("corrects a chunk: the mean over steps of each step's error; the length must match", async () => {
    const c = await newKey(t);
    const model = [
      [0, 0, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
    ];
    const id = await seedInference(t, c.customerId, { model: "mock-pi0", action: model[0], actionChunk: model });
    const corrected = [
      [3, 4, 0, 0, 0, 2, 1], // 5, 2, 1
      [1, 1, 1, 1, 1, 1, 0.5], // 0, 0, 0.5
    ];
    const res = await post(t, "correction", xKey(c.key), { inference_id: id, corrected_chunk: corrected });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      corrected_chunk: corrected,
      model_chunk: model,
      corrected_action: null,
      model_action: null,
      error: { translation: 2.5, rotation: 1, gripper: 0.75 },
    });
    const short = await post(t, "correction", xKey(c.key), { inference_id: id, corrected_chunk: [corrected[0]] });
    const p = expectProblem(short, 422, "validation_failed");
    expect(JSON.stringify(p.errors)).toContain("must have 2 steps");
    // A single corrected action on a chunking inference is compared with the returned action.
    const one = await post(t, "correction", xKey(c.key), { inference_id: id, corrected_action: [0, 0, 0, 0, 0, 0, 1] });
    expect(one.statusCode, one.body).toBe(201);
    expect((one.json() as Json).error).toEqual({ translation: 0, rotation: 0, gripper: 1 });
    // A chunk for an inference that returned a single action is refused.
    const single = await seedInference(t, c.customerId);
    expectProblem(
      await post(t, "correction", xKey(c.key), { inference_id: single, corrected_chunk: corrected }),
      422,
      "validation_failed",
    );
  });

  it("a correction needs exactly one of corrected_action and corrected_chunk", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    expectProblem(await post(t, "correction", xKey(c.key), { inference_id: id }), 422, "validation_failed");
    expectProblem(
      await post(t, "correction", xKey(c.key), {
        inference_id: id,
        corrected_action: [0, 0, 0, 0, 0, 0, 0],
        corrected_chunk: [[0, 0, 0, 0, 0, 0, 0]],
      }),
      422,
      "validation_failed",
    );
  });

  it("a correction of a failed inference (no action) is 409 inference_without_action; ratings are fine", async () => {
    const c = await newKey(t);
    const res = await infer(c.key, { model: "no-such-model" });
    expect(res.statusCode).toBe(404);
    await flushLogs(t.app);
    const hist = await t.app.inject({ method: "GET", url: "/v1/inference/history", headers: xKey(c.key) });
    const failed = (hist.json() as { data: { id: string; status: string }[] }).data[0];
    expect(failed?.status).toBe("error");
    const p = expectProblem(
      await post(t, "correction", xKey(c.key), {
        inference_id: failed?.id,
        corrected_action: [0, 0, 0, 0, 0, 0, 0],
      }),
      409,
      "inference_without_action",
    );
    expect(p.inference_id).toBe(failed?.id);
    const rated = await post(t, "failure", xKey(c.key), {
      inference_id: failed?.id,
      failure_type: "other",
      description: "no answer",
    });
    expect(rated.statusCode).toBe(201);
  });

  it("feedback right after an inference finds the row still buffered by the log writer", async () => {
    const c = await newKey(t);
    const res = await infer(c.key);
    expect(res.statusCode, res.body).toBe(200);
    const { inference_id, action } = res.json() as { inference_id: string; action: number[] };
    // Not flushed: the row is still in the writer's buffer.
    const fb = await post(t, "correction", xKey(c.key), { inference_id, corrected_action: action });
    expect(fb.statusCode, fb.body).toBe(201);
    expect(fb.json()).toMatchObject({
      inference_id,
      model_action: action,
      error: { translation: 0, rotation: 0, gripper: 0 },
    });
    const metrics = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/vla_feedback_inference_lookups_total\{result="found_after_flush"\} [1-9]/);
  });

  it("another customer's inference and an unknown id are 404; the other customer's list stays empty", async () => {
    const a = await newKey(t);
    const b = await newKey(t);
    const id = await seedInference(t, a.customerId);
    for (const headers of [xKey(b.key), owner(b.customerId)]) {
      expectProblem(await post(t, "success", headers, { inference_id: id, rating: 5 }), 404, "not_found");
      expectProblem(
        await post(t, "correction", headers, { inference_id: id, corrected_action: [0, 0, 0, 0, 0, 0, 0] }),
        404,
        "not_found",
      );
    }
    expectProblem(await post(t, "success", xKey(a.key), { inference_id: randomUUID(), rating: 5 }), 404, "not_found");
    expect((await post(t, "success", xKey(a.key), { inference_id: id, rating: 5 })).statusCode).toBe(201);
    for (const url of ["/v1/feedback", `/v1/feedback?inference_id=${id}`]) {
      const res = await t.app.inject({ method: "GET", url, headers: xKey(b.key) });
      expect(res.statusCode).toBe(200);
      expect((res.json() as { data: unknown[] }).data).toEqual([]);
    }
    const stats = await t.app.inject({ method: "GET", url: "/v1/feedback/stats", headers: xKey(b.key) });
    expect((stats.json() as { overall: { count: number } }).overall.count).toBe(0);
  });

  it("an inference older than FEEDBACK_MAX_AGE_DAYS (90) is 404", async () => {
    const c = await newKey(t);
    const day = 86_400_000;
    const old = await seedInference(t, c.customerId, { createdAt: new Date(t.clock.now() - 91 * day).toISOString() });
    const recent = await seedInference(t, c.customerId, {
      createdAt: new Date(t.clock.now() - 89 * day).toISOString(),
    });
    expectProblem(await post(t, "success", xKey(c.key), { inference_id: old, rating: 3 }), 404, "not_found");
    expect((await post(t, "success", xKey(c.key), { inference_id: recent, rating: 3 })).statusCode).toBe(201);
  });

  it("sessions and keys with the inference scope may send; an admin-only key may not; no credential is 401", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const { seedKey } = await import("../helpers/limits.ts");
    const admin = await seedKey(t.database, c.customerId, { scopes: ["admin"] });
    expectProblem(await post(t, "success", xKey(admin.key), { inference_id: id, rating: 2 }), 403, "forbidden");
    expectProblem(await post(t, "success", {}, { inference_id: id, rating: 2 }), 401, "unauthorized");
    expect((await post(t, "success", owner(c.customerId), { inference_id: id, rating: 2 })).statusCode).toBe(201);
  });

  it("a key bound to a robot reports only on that robot's inferences", async () => {
    const c = await newKey(t);
    const made = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: owner(c.customerId),
      payload: { name: "arm-1 key", robot_id: "arm-1" },
    });
    expect(made.statusCode, made.body).toBe(201);
    const bound = (made.json() as { key: string }).key;
    const mine = await seedInference(t, c.customerId, { robotId: "arm-1" });
    const other = await seedInference(t, c.customerId, { robotId: "arm-2" });
    expect((await post(t, "success", xKey(bound), { inference_id: mine, rating: 5 })).statusCode).toBe(201);
    expectProblem(await post(t, "success", xKey(bound), { inference_id: other, rating: 5 }), 403, "robot_mismatch");
  });
});

describe("Idempotency-Key", () => {
  it("a retry returns the first result (200, Idempotent-Replayed), stores nothing new", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const body = { inference_id: id, corrected_action: [1, 0, 0, 0, 0, 0, 0], comment: "left" };
    const key = { "idempotency-key": randomUUID() };
    const first = await post(t, "correction", xKey(c.key), body, key);
    expect(first.statusCode, first.body).toBe(201);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    // Same body, members in another order: the same request.
    const again = await post(
      t,
      "correction",
      xKey(c.key),
      { comment: "left", corrected_action: body.corrected_action, inference_id: id },
      key,
    );
    expect(again.statusCode, again.body).toBe(200);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.json()).toEqual(first.json());
    // Keys are per customer: another customer's request with the same key is its own (here a 404).
    const other = await newKey(t);
    expect((await post(t, "correction", xKey(other.key), body, key)).statusCode).toBe(404);
    const list = await t.app.inject({ method: "GET", url: `/v1/feedback?inference_id=${id}`, headers: xKey(c.key) });
    expect((list.json() as { data: unknown[] }).data).toHaveLength(1);
  });

  it("the same key with another body or on another route is 422 idempotency_key_reused", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const key = { "idempotency-key": `k-${randomUUID()}` };
    expect((await post(t, "success", xKey(c.key), { inference_id: id, rating: 4 }, key)).statusCode).toBe(201);
    expectProblem(
      await post(t, "success", xKey(c.key), { inference_id: id, rating: 5 }, key),
      422,
      "idempotency_key_reused",
    );
    expectProblem(
      await post(t, "safety", xKey(c.key), { inference_id: id, rating: 4 }, key),
      422,
      "idempotency_key_reused",
    );
    // Without the key, the same body is a new record.
    expect((await post(t, "success", xKey(c.key), { inference_id: id, rating: 4 })).statusCode).toBe(201);
  });

  it("concurrent requests with one key store one record", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const key = { "idempotency-key": randomUUID() };
    const all = await Promise.all(
      Array.from({ length: 5 }, () => post(t, "success", xKey(c.key), { inference_id: id, rating: 3 }, key)),
    );
    expect(all.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(all.map((r) => (r.json() as Json).id)).size).toBe(1);
  });

  it("a malformed key is 400", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    for (const bad of ["has space", "x".repeat(256)]) {
      expectProblem(
        await post(t, "success", xKey(c.key), { inference_id: id, rating: 4 }, { "idempotency-key": bad }),
        400,
        "invalid_request",
      );
    }
  });
});
