import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { owner } from "../helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, newKey, pattern } from "./helpers.ts";

/** POST /v1/inference and POST /act with API keys bound to a robot (docs/api-keys.md). */
let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(224, 224, 1)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

type Json = Record<string, unknown>;

/** A fresh customer with a plain key and a key carrying `defaults`. */
async function boundKey(defaults: Json) {
  const { customerId, key: plainKey } = await newKey(t);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: owner(customerId),
    payload: { name: "bound", ...defaults },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { customerId, plainKey, key: (res.json() as { key: string }).key };
}

const infer = (key: string, payload: Json) =>
  t.app.inject({ method: "POST", url: "/v1/inference", headers: { "x-api-key": key }, payload });

const act = (key: string, doc: Json, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: "POST",
    url: "/act",
    headers: { "content-type": "application/json", "x-api-key": key, ...headers },
    payload: JSON.stringify({
      image: { __numpy__: pattern(224, 224, 2).toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
      instruction: "pick up the red block",
      ...doc,
    }),
  });

async function logRow(key: string, id: string): Promise<Json> {
  await flushLogs(t.app);
  const res = await t.app.inject({ method: "GET", url: `/v1/inference/${id}`, headers: { "x-api-key": key } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Json;
}

async function history(key: string): Promise<Json[]> {
  await flushLogs(t.app);
  const res = await t.app.inject({ method: "GET", url: "/v1/inference/history", headers: { "x-api-key": key } });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { data: Json[] }).data;
}

describe("POST /v1/inference with a key bound to a robot", () => {
  it("without robot_id, model or unnorm_key: the key's are used and logged", async () => {
    const b = await boundKey({ robot_id: "arm-7", model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    const res = await infer(b.key, { image: img, instruction: "pick" });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as Json;
    expect(body).toMatchObject({ model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    expect(await logRow(b.key, body.inference_id as string)).toMatchObject({
      robot_id: "arm-7",
      model: "mock-openvla-7b",
      unnorm_key: "fractal20220817_data",
      source: "rest",
    });
  });

  it("naming the key's robot is fine; naming another is 403 robot_mismatch, not logged", async () => {
    const b = await boundKey({ robot_id: "arm-7" });
    const same = await infer(b.key, { image: img, instruction: "pick", robot_id: "arm-7" });
    expect(same.statusCode, same.body).toBe(200);
    const other = await infer(b.key, { image: img, instruction: "pick", robot_id: "arm-8" });
    expect(other.statusCode, other.body).toBe(403);
    expect(other.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(other.json()).toMatchObject({ code: "robot_mismatch", robot_id: "arm-8", key_robot_id: "arm-7" });
    const rows = await history(b.key);
    expect(rows.map((r) => r.robot_id)).toEqual(["arm-7"]);
  });

  it("model and unnorm_key in the request override the key's; the key's unnorm_key stays with its model", async () => {
    const b = await boundKey({ robot_id: "arm-7", unnorm_key: "fractal20220817_data" });
    const named = await infer(b.key, { image: img, instruction: "pick", unnorm_key: "bridge_orig" });
    expect(named.statusCode, named.body).toBe(200);
    expect(named.json()).toMatchObject({ model: "mock-openvla-7b", unnorm_key: "bridge_orig" });
    // Another model: the key's unnorm_key (of the default model) does not follow it.
    const tiny = await infer(b.key, { image: img, instruction: "pick", model: "demo-vla-tiny" });
    expect(tiny.statusCode, tiny.body).toBe(200);
    expect(tiny.json()).toMatchObject({ model: "demo-vla-tiny", unnorm_key: "bridge_orig" });
  });

  it("without a bound robot, robot_id is still required (422); sessions have no key defaults", async () => {
    const b = await boundKey({ model: "demo-vla-tiny" });
    const res = await infer(b.key, { image: img, instruction: "pick" });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json()).toMatchObject({ code: "validation_failed", errors: [{ path: "/robot_id" }] });
    const withRobot = await infer(b.key, { image: img, instruction: "pick", robot_id: "arm-1" });
    expect(withRobot.json()).toMatchObject({ model: "demo-vla-tiny" });
    const session = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: owner(b.customerId),
      payload: { image: img, instruction: "pick" },
    });
    expect(session.statusCode, session.body).toBe(422);
  });

  it("a failed request is logged with the key's robot", async () => {
    const b = await boundKey({ robot_id: "arm-7" });
    const res = await infer(b.key, { image: img, instruction: "pick", unnorm_key: "nope" });
    expect(res.statusCode, res.body).toBe(400);
    const rows = await history(b.key);
    expect(rows[0]).toMatchObject({ status: "error", error_code: "invalid_unnorm_key", robot_id: "arm-7" });
  });

  it("a PATCH of the defaults reaches the cached key", async () => {
    const b = await boundKey({ robot_id: "arm-7" });
    expect((await infer(b.key, { image: img, instruction: "pick" })).statusCode).toBe(200);
    const keys = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: owner(b.customerId) });
    const id = (keys.json() as { data: Json[] }).data.find((k) => k.robot_id === "arm-7")?.id as string;
    const p = await t.app.inject({
      method: "PATCH",
      url: `/v1/api-keys/${id}`,
      headers: owner(b.customerId),
      payload: { robot_id: "arm-8" },
    });
    expect(p.statusCode, p.body).toBe(200);
    const res = await infer(b.key, { image: img, instruction: "pick", robot_id: "arm-7" });
    expect(res.statusCode, res.body).toBe(403);
    const ok = await infer(b.key, { image: img, instruction: "pick" });
    expect(await logRow(b.key, (ok.json() as Json).inference_id as string)).toMatchObject({ robot_id: "arm-8" });
  });
});

describe("POST /act with a key bound to a robot", () => {
  it("without X-Robot-Id: the key's robot, model and unnorm_key", async () => {
    const b = await boundKey({ robot_id: "arm-5", model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    const res = await act(b.key, {});
    expect(res.statusCode, res.body).toBe(200);
    const id = res.headers["x-inference-id"] as string;
    expect(await logRow(b.key, id)).toMatchObject({
      robot_id: "arm-5",
      model: "mock-openvla-7b",
      unnorm_key: "fractal20220817_data",
      source: "act",
    });
  });

  it("the key's model is used (no model field in deploy.py); body unnorm_key overrides the key's", async () => {
    const b = await boundKey({ robot_id: "arm-5", model: "demo-vla-tiny" });
    const res = await act(b.key, { unnorm_key: "bridge_orig" });
    expect(res.statusCode, res.body).toBe(200);
    expect(await logRow(b.key, res.headers["x-inference-id"] as string)).toMatchObject({
      robot_id: "arm-5",
      model: "demo-vla-tiny",
      unnorm_key: "bridge_orig",
    });
  });

  it("X-Robot-Id of the key's robot is fine; another is 403 robot_mismatch", async () => {
    const b = await boundKey({ robot_id: "arm-5" });
    expect((await act(b.key, {}, { "x-robot-id": "arm-5" })).statusCode).toBe(200);
    const res = await act(b.key, {}, { "x-robot-id": "arm-6" });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.body).toBe('"error"');
    expect(res.headers["x-problem-code"]).toBe("robot_mismatch");
    expect((await history(b.key)).map((r) => r.robot_id)).toEqual(["arm-5"]);
  });
});
