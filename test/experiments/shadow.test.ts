import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionDistances } from "../../src/modules/experiments/shadow-queue.ts";
import { safetyWriters } from "../../src/modules/safety/safety.module.ts";
import { jpeg } from "../engine/helpers.ts";
import { owner, xKey } from "../helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { createExperiment, metricValue, settleShadow } from "./helpers.ts";

let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(224, 224, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const infer = (key: string, robotId: string, instruction = "pick up the red block") =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: xKey(key),
    payload: { image: img, instruction, robot_id: robotId, unnorm_key: "bridge_orig" },
  });

describe("shadow experiments", () => {
  it("runs the candidate after the answer and records its action, verdict and distances, queryable per robot and instruction", async () => {
    const c = await newKey(t);
    const before = await metricValue(t.app, "vla_shadow_requests_total", { outcome: "run" });
    const e = await createExperiment(t.app, c.customerId, {
      name: "shadow tiny",
      mode: "shadow",
      candidate_model: "demo-vla-tiny",
      sample_rate: 1,
    });
    expect(e.statusCode, e.body).toBe(201);
    const id = e.json().id;
    expect(e.json()).toMatchObject({
      mode: "shadow",
      candidate_model: "demo-vla-tiny",
      sample_rate: 1,
      variants: null,
    });

    const served = (await infer(c.key, "arm-1")).json();
    // The served answer is the primary's: no experiment field, the default model.
    expect(served.model).toBe("mock-openvla-7b");
    expect(served.experiment).toBeUndefined();
    await infer(c.key, "arm-2", "place the cup");
    await settleShadow(t.app);
    expect(await metricValue(t.app, "vla_shadow_requests_total", { outcome: "run" })).toBe(before + 2);

    const page = await t.app.inject({
      method: "GET",
      url: `/v1/experiments/${id}/shadow?robot_id=arm-1`,
      headers: xKey(c.key),
    });
    expect(page.statusCode, page.body).toBe(200);
    const body = page.json();
    expect(body.data).toHaveLength(1);
    const rec = body.data[0];
    expect(rec).toMatchObject({
      inference_id: served.inference_id,
      robot_id: "arm-1",
      served_model: "mock-openvla-7b",
      candidate_model: "demo-vla-tiny",
      served_action: served.action,
      served_safety_status: served.safety.status,
      error_code: null,
    });
    expect(rec.candidate_action).toHaveLength(7);
    expect(["pass", "clamped", "rejected", "emergency_stop"]).toContain(rec.candidate_safety_status);
    const d = actionDistances(served.action, rec.candidate_action);
    expect(rec.distance.translation).toBeCloseTo(d?.translation as number, 12);
    expect(rec.distance.rotation).toBeCloseTo(d?.rotation as number, 12);
    expect(rec.distance.gripper).toBeCloseTo(d?.gripper as number, 12);
    expect(body.summary).toMatchObject({ n: 1, errors: 0 });
    expect(body.summary.translation.mean).toBeCloseTo(d?.translation as number, 12);

    // By instruction: matched by its normalized hash (case and spacing do not matter).
    const byText = await t.app.inject({
      method: "GET",
      url: `/v1/experiments/${id}/shadow?instruction=${encodeURIComponent("  Place   the CUP ")}`,
      headers: xKey(c.key),
    });
    expect(byText.json().data.map((r: { robot_id: string }) => r.robot_id)).toEqual(["arm-2"]);
    const all = await t.app.inject({ method: "GET", url: `/v1/experiments/${id}/shadow`, headers: xKey(c.key) });
    expect(all.json().summary.n).toBe(2);
    expect(all.json().data).toHaveLength(2);

    // A split experiment has no shadow records; a shadow one no results.
    expect(
      (await t.app.inject({ method: "GET", url: `/v1/experiments/${id}/results`, headers: xKey(c.key) })).statusCode,
    ).toBe(409);
  });

  it("judges the candidate without side effects: incidents are the served request's only", async () => {
    const c = await newKey(t);
    // A profile every mock action exceeds: the served action is clamped (incidents) and so is the candidate's.
    const put = await t.app.inject({
      method: "PUT",
      url: "/v1/robots/arm-tight/safety-profile",
      headers: owner(c.customerId),
      payload: {
        max_linear_velocity: 0.0001,
        policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" },
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const e = await createExperiment(t.app, c.customerId, {
      name: "shadow",
      mode: "shadow",
      candidate_model: "demo-vla-tiny",
      sample_rate: 1,
    });
    const served = (await infer(c.key, "arm-tight")).json();
    expect(served.safety.status).toBe("clamped");
    await settleShadow(t.app);
    const w = safetyWriters.get(t.app.platform);
    await w?.incidents.flush();
    const rec = (
      await t.app.inject({ method: "GET", url: `/v1/experiments/${e.json().id}/shadow`, headers: xKey(c.key) })
    ).json().data[0];
    expect(rec.candidate_safety_status).toBe("clamped");
    const incidents = (await t.app.inject({ method: "GET", url: "/v1/safety/incidents", headers: xKey(c.key) })).json()
      .data as { inference_id: string }[];
    expect(incidents.length).toBe(served.safety.violations.length);
    for (const i of incidents) expect(i.inference_id).toBe(served.inference_id);
  });

  it("sample_rate 0 shadows nothing", async () => {
    const c = await newKey(t);
    const e = await createExperiment(t.app, c.customerId, {
      name: "none",
      mode: "shadow",
      candidate_model: "demo-vla-tiny",
      sample_rate: 0,
    });
    await infer(c.key, "arm-1");
    await settleShadow(t.app);
    await flushLogs(t.app);
    const page = await t.app.inject({
      method: "GET",
      url: `/v1/experiments/${e.json().id}/shadow`,
      headers: xKey(c.key),
    });
    expect(page.json().summary.n).toBe(0);
  });
});

describe("shadow queue byte budget", () => {
  it("a request whose image is larger than SHADOW_QUEUE_MAX_BYTES is not queued: dropped and counted", async () => {
    const small = await buildInferenceApp({ SHADOW_QUEUE_MAX_BYTES: "16" });
    try {
      const e = await createExperiment(small.app, small.customerId, {
        name: "shadow tiny",
        mode: "shadow",
        candidate_model: "demo-vla-tiny",
        sample_rate: 1,
      });
      expect(e.statusCode, e.body).toBe(201);
      const res = await small.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: xKey(small.key),
        payload: { image: img, instruction: "pick up the red block", robot_id: "arm-1", unnorm_key: "bridge_orig" },
      });
      expect(res.statusCode, res.body).toBe(200);
      await settleShadow(small.app);
      expect(await metricValue(small.app, "vla_shadow_requests_total", { outcome: "dropped" })).toBe(1);
      expect(await metricValue(small.app, "vla_shadow_requests_total", { outcome: "run" })).toBe(0);
    } finally {
      await small.close();
    }
  });
});
