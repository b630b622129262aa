import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { owner, seedKey } from "../helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, newKey, pattern } from "./helpers.ts";

let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildInferenceApp();
});
afterAll(async () => {
  await t?.close();
});

/**
 * Exactly what OpenVLA's stock client sends after `json_numpy.patch()`:
 * `requests.post(url, json={"image": np.uint8 array, "instruction": ..., "unnorm_key": ...})`,
 * the array serialised as base64 of its raw bytes, dtype descr "|u1", shape as a list.
 */
function stockBody(seed = 1, extra: Record<string, unknown> = {}) {
  const raw = pattern(224, 224, seed);
  return JSON.stringify({
    image: { __numpy__: raw.toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
    instruction: "pick up the red block",
    unnorm_key: "bridge_orig",
    ...extra,
  });
}

/** What `json_numpy.loads` does with the answer: base64 -> raw little-endian float64s. */
function decodeF8(doc: { __numpy__: string; dtype: string; shape: number[] }): number[] {
  expect(doc.dtype).toBe("<f8");
  expect(doc.shape).toEqual([7]);
  const bytes = Buffer.from(doc.__numpy__, "base64");
  expect(bytes.length).toBe(56);
  return Array.from({ length: 7 }, (_, i) => bytes.readDoubleLE(i * 8));
}

const act = (payload: string, headers: Record<string, string> = { "x-api-key": "" }) =>
  t.app.inject({
    method: "POST",
    url: "/act",
    headers: { "content-type": "application/json", ...headers },
    payload,
  });

describe("POST /act (OpenVLA deploy.py protocol)", () => {
  it("answers a hand-built json_numpy request with a float64 [7] json_numpy array", async () => {
    const res = await act(stockBody(), { "x-api-key": t.key });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers["content-type"]).toContain("application/json");
    expect(res.headers["server-timing"]).toContain("model;dur=");
    expect(res.headers.ratelimit).toBeDefined();
    const action = decodeF8(res.json());
    // Same frame and instruction through the REST API: same action (both run the mock on the same bytes).
    const rest = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": t.key },
      payload: {
        image: JSON.parse(stockBody()).image,
        instruction: "pick up the red block",
        unnorm_key: "bridge_orig",
        robot_id: "arm-act",
      },
    });
    expect(rest.json().action).toEqual(action);
    // Authorization: Bearer and Api-Key forms work too.
    expect((await act(stockBody(), { authorization: `Bearer ${t.key}` })).statusCode).toBe(200);
    expect((await act(stockBody(), { authorization: `Api-Key ${t.key}` })).statusCode).toBe(200);
  });

  it("supports the `encoded` variant: the answer is a JSON string holding the json_numpy document", async () => {
    const res = await act(JSON.stringify({ encoded: stockBody() }), { "x-api-key": t.key });
    expect(res.statusCode, res.body).toBe(200);
    const outer: unknown = res.json();
    expect(typeof outer).toBe("string");
    const action = decodeF8(JSON.parse(outer as string));
    const plain = decodeF8((await act(stockBody(), { "x-api-key": t.key })).json());
    expect(action).toEqual(plain);
  });

  it("logs /act inferences with source act", async () => {
    const c = await newKey(t);
    expect((await act(stockBody(2), { "x-api-key": c.key })).statusCode).toBe(200);
    await act(stockBody(2, { unnorm_key: "nope" }), { "x-api-key": c.key });
    await flushLogs(t.app);
    const res = await t.app.inject({ method: "GET", url: "/v1/inference/history", headers: { "x-api-key": c.key } });
    const rows = res.json().data as Record<string, unknown>[];
    expect(rows.map((r) => `${r.source}:${r.status}:${r.error_code}`).sort()).toEqual([
      "act:error:invalid_unnorm_key",
      "act:ok:null",
    ]);
  });

  describe('failures answer the JSON string "error" with the status and problem headers', () => {
    const expectError = (res: Awaited<ReturnType<typeof act>>, status: number, code: string) => {
      expect(res.statusCode, res.body).toBe(status);
      expect(res.json()).toBe("error");
      expect(res.headers["x-problem-code"]).toBe(code);
      expect(String(res.headers["x-problem-detail"]).length).toBeGreaterThan(0);
    };

    it("401 without a key, 401 with a wrong key, 403 without the inference scope", async () => {
      expectError(await act(stockBody(), {}), 401, "unauthorized");
      expectError(await act(stockBody(), { "x-api-key": "vla_live_nope" }), 401, "malformed_api_key");
      const admin = await seedKey(t.database, t.customerId, { scopes: ["admin"] });
      expectError(await act(stockBody(), { "x-api-key": admin.key }), 403, "forbidden");
    });

    it("422 for a bad image, 400 for an unknown unnorm_key (none: the model's default), 400 for malformed JSON", async () => {
      const key = { "x-api-key": t.key };
      expectError(await act(stockBody(1, { unnorm_key: "nope" }), key), 400, "invalid_unnorm_key");
      const { unnorm_key: _u, ...noKey } = JSON.parse(stockBody()) as Record<string, unknown>;
      expect((await act(JSON.stringify(noKey), key)).statusCode).toBe(200);
      const bad = JSON.parse(stockBody()) as { image: { shape: number[] } };
      bad.image.shape = [224, 224, 4];
      expectError(await act(JSON.stringify(bad), key), 422, "invalid_array");
      expectError(await act(stockBody(1, { image: "not an array" }), key), 422, "invalid_image");
      expectError(await act(stockBody(1, { instruction: "" }), key), 422, "validation_failed");
      expectError(await act('{"image": ', key), 400, "invalid_json");
      expectError(await act(JSON.stringify({ encoded: "{not json" }), key), 400, "invalid_json");
    });

    it("429 with RateLimit and Retry-After headers", async () => {
      const c = await newKey(t, { tier: "free", perMinute: 1 });
      expect((await act(stockBody(), { "x-api-key": c.key })).statusCode).toBe(200);
      const res = await act(stockBody(), { "x-api-key": c.key });
      expectError(res, 429, "quota_exceeded");
      expect(res.headers["retry-after"]).toBeDefined();
      expect(res.headers.ratelimit).toBeDefined();
      expect(res.headers["ratelimit-policy"]).toBeDefined();
      t.clock.advance(61_000);
    });
  });
});

describe("POST /act tells the robot what safety did, in headers", () => {
  const putProfile = async (robot: string, policy: string) => {
    // A velocity limit the mock's actions always exceed by far (critical): the policy decides.
    const res = await t.app.inject({
      method: "PUT",
      url: `/v1/robots/${robot}/safety-profile`,
      headers: owner(t.customerId),
      payload: {
        max_linear_velocity: 0.0001,
        policy: { low: policy, medium: policy, high: policy, critical: policy },
      },
    });
    expect(res.statusCode, res.body).toBe(200);
  };

  it("pass: X-Safety-Status pass, no violations, and the inference id of the logged call", async () => {
    const res = await act(stockBody(3), { "x-api-key": t.key, "x-robot-id": "arm-pass" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers["x-safety-status"]).toBe("pass");
    expect(res.headers["x-safety-violations"]).toBe("");
    decodeF8(res.json());
    await flushLogs(t.app);
    const row = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${String(res.headers["x-inference-id"])}`,
      headers: { "x-api-key": t.key },
    });
    expect(row.statusCode, row.body).toBe(200);
    expect(row.json()).toMatchObject({ source: "act", robot_id: "arm-pass", safety_status: "pass" });
  });

  for (const [policy, status] of [
    ["clamp", "clamped"],
    ["reject", "rejected"],
    ["emergency_stop", "emergency_stop"],
  ] as const) {
    it(`${status}: the body stays a json_numpy [7]; the headers say ${status} and name the rule`, async () => {
      const robot = `arm-${policy.replace("_", "-")}`;
      await putProfile(robot, policy);
      const res = await act(stockBody(4), { "x-api-key": t.key, "x-robot-id": robot });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers["x-safety-status"]).toBe(status);
      expect(String(res.headers["x-safety-violations"])).toMatch(/(^|, )linear_velocity:critical(,|$)/);
      expect(res.headers["x-inference-id"]).toMatch(/^[0-9a-f-]{36}$/);
      const action = decodeF8(res.json());
      if (status !== "clamped") expect(action.slice(0, 6).every((v) => v === 0)).toBe(true);
    });
  }
});
