import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InferenceTestContext } from "../inference/helpers.ts";
import { buildFeedbackApp, expectProblem, type Json, newKey, owner, post, seedInference, xKey } from "./helpers.ts";

/** GET /v1/feedback (filters, cursor), GET /v1/feedback/stats (exact figures), erasure, the flood cap. */
let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildFeedbackApp({ FEEDBACK_PER_MINUTE: "400" });
});
afterAll(async () => {
  await t?.close();
});

type Page = { data: Json[]; next_cursor: string | null };
const get = (key: string, url: string) => t.app.inject({ method: "GET", url, headers: xKey(key) });

describe("GET /v1/feedback", () => {
  it("pages newest first with an opaque cursor, no duplicates or gaps", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const made: string[] = [];
    for (let i = 0; i < 23; i++) {
      const res = await post(t, "success", xKey(c.key), { inference_id: id, rating: (i % 5) + 1 });
      expect(res.statusCode).toBe(201);
      made.push((res.json() as Json).id as string);
      if (i % 4 === 0) t.clock.advance(1_000); // several rows share a created_at: the id breaks ties
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(c.key, `/v1/feedback?limit=10${cursor === null ? "" : `&cursor=${cursor}`}`);
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as Page;
      seen.push(...page.data.map((r) => r.id as string));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(23);
    expect(new Set(seen)).toEqual(new Set(made));
    const all = (await get(c.key, "/v1/feedback?limit=200")).json() as Page;
    expect(all.data.map((r) => r.id)).toEqual(seen);
    const times = all.data.map((r) => r.created_at as string);
    expect([...times].sort().reverse()).toEqual(times);
  });

  it("filters by type, robot_id, model, inference_id and time range", async () => {
    const c = await newKey(t);
    const a = await seedInference(t, c.customerId, { robotId: "r1", model: "demo-vla-tiny" });
    const b = await seedInference(t, c.customerId, { robotId: "r2", model: "mock-openvla-7b" });
    const start = new Date(t.clock.now()).toISOString();
    await post(t, "success", xKey(c.key), { inference_id: a, rating: 5 });
    await post(t, "failure", xKey(c.key), { inference_id: a, failure_type: "timeout", description: "slow" });
    t.clock.advance(10_000);
    const mid = new Date(t.clock.now()).toISOString();
    await post(t, "safety", xKey(c.key), { inference_id: b, rating: 2 });
    await post(t, "correction", xKey(c.key), { inference_id: b, corrected_action: [0, 0, 0, 0, 0, 0, 1] });
    const q = async (query: string) =>
      ((await get(c.key, `/v1/feedback?${query}`)).json() as Page).data.map((r) => r.type).sort();
    expect(await q("")).toEqual(["correction", "failure", "safety", "success"]);
    expect(await q("type=failure")).toEqual(["failure"]);
    expect(await q("robot_id=r1")).toEqual(["failure", "success"]);
    expect(await q("model=mock-openvla-7b")).toEqual(["correction", "safety"]);
    expect(await q(`inference_id=${b}`)).toEqual(["correction", "safety"]);
    expect(await q(`inference_id=${randomUUID()}`)).toEqual([]);
    expect(await q(`from=${encodeURIComponent(mid)}`)).toEqual(["correction", "safety"]);
    expect(await q(`from=${encodeURIComponent(start)}&to=${encodeURIComponent(mid)}`)).toEqual(["failure", "success"]);
    expect(await q("type=success&robot_id=r2")).toEqual([]);
    // The owner's session sees the same.
    const res = await t.app.inject({ method: "GET", url: "/v1/feedback?type=safety", headers: owner(c.customerId) });
    expect((res.json() as Page).data).toHaveLength(1);
  });
});

describe("GET /v1/feedback/stats", () => {
  it("counts, rating means and distributions, correction error statistics and failure histograms", async () => {
    const c = await newKey(t);
    const a = await seedInference(t, c.customerId, { robotId: "r1", model: "m-a" });
    const b = await seedInference(t, c.customerId, { robotId: "r2", model: "m-b" });
    const none = await seedInference(t, c.customerId, { robotId: null, model: "m-b" });
    for (const rating of [5, 4, 4]) await post(t, "success", xKey(c.key), { inference_id: a, rating });
    await post(t, "success", xKey(c.key), { inference_id: b, rating: 1 });
    await post(t, "safety", xKey(c.key), { inference_id: b, rating: 2, observed_issue: "near_miss" });
    await post(t, "safety", xKey(c.key), { inference_id: none, rating: 5 });
    // Model actions are all zeros: translation errors 1, 2, 3, 4 (on axis x), rotation 0, gripper 0.5;
    // p95 is percentile_cont: 3 + 0.85 * (4 - 3).
    for (const x of [1, 2, 3, 4]) {
      const res = await post(t, "correction", xKey(c.key), {
        inference_id: x <= 2 ? a : b,
        corrected_action: [x, 0, 0, 0, 0, 0, 0.5],
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    await post(t, "failure", xKey(c.key), {
      inference_id: a,
      failure_type: "grasp_failed",
      description: "x",
      severity: "low",
    });
    await post(t, "failure", xKey(c.key), { inference_id: a, failure_type: "grasp_failed", description: "y" });
    await post(t, "failure", xKey(c.key), {
      inference_id: b,
      failure_type: "collision",
      description: "z",
      severity: "critical",
    });

    const res = await get(c.key, "/v1/feedback/stats");
    expect(res.statusCode, res.body).toBe(200);
    const s = res.json() as {
      overall: Json;
      by_model: (Json & { model: string })[];
      by_robot: (Json & { robot_id: string | null })[];
      truncated: boolean;
      from: string | null;
    };
    expect(s.from).toBeNull();
    expect(s.truncated).toBe(false);
    expect(s.overall).toEqual({
      count: 13,
      by_type: { success: 4, safety: 2, correction: 4, failure: 3 },
      success_rating: { count: 4, mean: 3.5, distribution: { 1: 1, 2: 0, 3: 0, 4: 2, 5: 1 } },
      safety_rating: { count: 2, mean: 3.5, distribution: { 1: 0, 2: 1, 3: 0, 4: 0, 5: 1 } },
      observed_issues: { near_miss: 1 },
      correction_error: {
        count: 4,
        translation: { mean: 2.5, p50: 2.5, p95: expect.closeTo(3.85, 12), max: 4 },
        rotation: { mean: 0, p50: 0, p95: 0, max: 0 },
        gripper: { mean: 0.5, p50: 0.5, p95: 0.5, max: 0.5 },
      },
      failure_types: { grasp_failed: 2, collision: 1 },
      failure_severities: { low: 1, critical: 1 },
    });
    // Per model, largest first: m-a has 3 success + 2 corrections + 2 failures = 7.
    expect(s.by_model.map((g) => [g.model, g.count])).toEqual([
      ["m-a", 7],
      ["m-b", 6],
    ]);
    const ma = s.by_model[0] as unknown as { correction_error: { translation: Json }; success_rating: Json };
    expect(ma.correction_error.translation).toEqual({ mean: 1.5, p50: 1.5, p95: expect.closeTo(1.95, 12), max: 2 });
    expect(ma.success_rating).toEqual({
      count: 3,
      mean: 13 / 3,
      distribution: { 1: 0, 2: 0, 3: 0, 4: 2, 5: 1 },
    });
    expect(s.by_robot.map((g) => [g.robot_id, g.count])).toEqual([
      ["r1", 7],
      ["r2", 5],
      [null, 1],
    ]);

    const r2 = (await get(c.key, "/v1/feedback/stats?robot_id=r2")).json() as { overall: Json; by_robot: Json[] };
    expect(r2.overall.count).toBe(5);
    expect(r2.by_robot).toHaveLength(1);
  });

  it("an empty range answers zeros and nulls; the range bounds created_at", async () => {
    const c = await newKey(t);
    const id = await seedInference(t, c.customerId);
    const before = new Date(t.clock.now()).toISOString();
    await post(t, "success", xKey(c.key), { inference_id: id, rating: 2 });
    t.clock.advance(60_000);
    const after = new Date(t.clock.now()).toISOString();
    const empty = (await get(c.key, `/v1/feedback/stats?from=${encodeURIComponent(after)}`)).json() as {
      from: string;
      overall: Json;
      by_model: unknown[];
    };
    expect(empty.from).toBe(after);
    expect(empty.by_model).toEqual([]);
    expect(empty.overall).toMatchObject({
      count: 0,
      success_rating: { count: 0, mean: null, distribution: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 } },
      correction_error: { count: 0, translation: { mean: null, p50: null, p95: null, max: null } },
      failure_types: {},
    });
    const within = (
      await get(c.key, `/v1/feedback/stats?from=${encodeURIComponent(before)}&to=${encodeURIComponent(after)}`)
    ).json() as { overall: { count: number } };
    expect(within.overall.count).toBe(1);
  });
});

describe("erasure and limits", () => {
  it("the deletion hook removes the customer's feedback (counted) and unlinks a deleted user", async () => {
    const c = await newKey(t);
    const keep = await newKey(t);
    const userId = randomUUID();
    for (const k of [c, keep]) {
      const id = await seedInference(t, k.customerId);
      await post(t, "success", xKey(k.key), { inference_id: id, rating: 3 });
      await post(t, "failure", xKey(k.key), { inference_id: id, failure_type: "other", description: "d" });
    }
    // A row attributed to a user (sessions in these tests carry no user id: set it directly).
    const { sql } = await import("drizzle-orm");
    await t.database.db.execute(sql`update feedback set user_id = ${userId} where customer_id = ${keep.customerId}`);
    const platform = t.app.platform;
    expect(platform.deletion.names).toContain("feedback");
    // The user goes, the customer stays: rows stay, unattributed.
    const userOnly = await t.database.db.transaction((tx) =>
      platform.deletion.run({ tx, userId, customerId: keep.customerId }, false),
    );
    expect(userOnly.feedback_unattributed).toBe(2);
    const kept = (await get(keep.key, "/v1/feedback")).json() as Page;
    expect(kept.data.map((r) => r.user_id)).toEqual([null, null]);
    // The whole customer goes.
    const counts = await t.database.db.transaction((tx) =>
      platform.deletion.run({ tx, userId: randomUUID(), customerId: c.customerId }, true),
    );
    expect(counts.feedback).toBe(2);
    expect(((await get(c.key, "/v1/feedback")).json() as Page).data).toEqual([]);
    expect(((await get(keep.key, "/v1/feedback")).json() as Page).data).toHaveLength(2);
  });

  it("feedback does not use the inference quota; its own per-minute cap answers 429 rate_limited", async () => {
    const { seedCustomer, seedKey } = await import("../helpers/limits.ts");
    const customerId = await seedCustomer(t.database, { tier: "free", perMinute: 2, perDay: 2, perMonth: 2 });
    const { key } = await seedKey(t.database, customerId);
    const id = await seedInference(t, customerId);
    for (let i = 0; i < 400; i++) {
      const res = await post(t, "success", xKey(key), { inference_id: id, rating: 4 });
      expect(res.statusCode, res.body).toBe(201);
    }
    const over = expectProblem(
      await post(t, "success", xKey(key), { inference_id: id, rating: 4 }),
      429,
      "rate_limited",
    );
    expect(String(over.detail)).toContain("400 per minute");
    expectProblem(await get(key, "/v1/feedback"), 429, "rate_limited");
    // The inference quota (2 per minute) was never touched.
    const usage = await t.app.inject({ method: "GET", url: "/v1/usage", headers: xKey(key) });
    expect(usage.statusCode, usage.body).toBe(200);
    expect(usage.json()).toMatchObject({ minute: { used: 0, limit: 2 }, day: { used: 0 }, month: { used: 0 } });
    t.clock.advance(61_000);
    expect((await post(t, "success", xKey(key), { inference_id: id, rating: 4 })).statusCode).toBe(201);
  });
});
