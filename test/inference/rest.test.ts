import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg } from "./helpers.ts";

let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(224, 224, 1)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const post = (payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": t.key, ...headers },
    payload: payload as object,
  });

describe("POST /v1/inference", () => {
  it("answers with the mock model: deterministic action, backend mock, timing and headers", async () => {
    const body = { image: img, instruction: "pick up the red block", robot_id: "arm-1", unnorm_key: "bridge_orig" };
    const a = await post(body);
    expect(a.statusCode, a.body).toBe(200);
    const ja = a.json();
    expect(ja.backend).toBe("mock");
    expect(ja.model).toBe("mock-openvla-7b");
    expect(ja.action).toHaveLength(7);
    expect(ja.safety).toEqual({
      status: "not_evaluated",
      reason: "safety evaluation is not enabled yet",
      violations: [],
      action_taken: "none",
      raw_action: ja.action,
    });
    expect(Object.keys(ja.timing).sort()).toEqual(["model_ms", "preprocess_ms", "queue_ms", "total_ms"]);
    expect(a.headers["server-timing"]).toMatch(
      /^preprocess;dur=[\d.]+, queue;dur=[\d.]+, model;dur=[\d.]+, total;dur=[\d.]+$/,
    );
    expect(a.headers.ratelimit).toBeDefined();
    expect(a.headers["ratelimit-policy"]).toBeDefined();
    const b = (await post(body)).json();
    expect(b.action).toEqual(ja.action);
    expect(b.inference_id).not.toBe(ja.inference_id);
    await flushLogs(t.app);
    const row = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${ja.inference_id}`,
      headers: { "x-api-key": t.key },
    });
    expect(row.statusCode, row.body).toBe(200);
    expect(row.json()).toMatchObject({
      status: "ok",
      source: "rest",
      robot_id: "arm-1",
      action: ja.action,
      backend: "mock",
    });
  });
});
