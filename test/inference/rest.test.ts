import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { seedKey } from "../helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, newKey, pattern, png } from "./helpers.ts";

let t: InferenceTestContext;
let jpegBytes: Buffer;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp();
  jpegBytes = await jpeg(224, 224, 1);
  img = jpegBytes.toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const post = (payload: unknown, headers: Record<string, string> = {}, key = t.key) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key, ...headers },
    payload: payload as object,
  });

const ok = { instruction: "pick up the red block", robot_id: "arm-1", unnorm_key: "bridge_orig" };

async function history(key: string, query = "") {
  await flushLogs(t.app);
  const res = await t.app.inject({
    method: "GET",
    url: `/v1/inference/history${query}`,
    headers: { "x-api-key": key },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as { data: Record<string, unknown>[]; next_cursor: string | null };
}

/** A PNG with a valid header declaring w x h pixels and no pixel data worth the name. */
function pngHeaderOnly(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

describe("POST /v1/inference: happy paths", () => {
  it("mock model: deterministic action, backend mock, timing, Server-Timing and RateLimit headers", async () => {
    const body = { image: img, ...ok };
    const a = await post(body);
    expect(a.statusCode, a.body).toBe(200);
    const ja = a.json();
    expect(ja.backend).toBe("mock");
    expect(ja.model).toBe("mock-openvla-7b");
    expect(ja.unnorm_key).toBe("bridge_orig");
    expect(ja.action).toHaveLength(7);
    for (const v of ja.action) expect(Number.isFinite(v)).toBe(true);
    expect(ja.safety).toMatchObject({ violations: [], action_taken: "none", raw_action: ja.action });
    expect(Object.keys(ja.timing).sort()).toEqual(["model_ms", "preprocess_ms", "queue_ms", "total_ms"]);
    expect(ja.timing.total_ms).toBeGreaterThanOrEqual(ja.timing.model_ms);
    expect(a.headers["server-timing"]).toMatch(
      /^preprocess;dur=[\d.]+, queue;dur=[\d.]+, model;dur=[\d.]+, total;dur=[\d.]+$/,
    );
    expect(a.headers.ratelimit).toMatch(/r=\d+/);
    expect(a.headers["ratelimit-policy"]).toBeDefined();
    const b = (await post(body)).json();
    expect(b.action).toEqual(ja.action);
    expect(b.inference_id).not.toBe(ja.inference_id);
    // A different instruction gives a different (still deterministic) action.
    const c = (await post({ ...body, instruction: "open the drawer" })).json();
    expect(c.action).not.toEqual(ja.action);
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
      model: "mock-openvla-7b",
      api_key_id: t.keyId,
      instruction: "pick up the red block",
      error_code: null,
    });
    expect(row.json().image_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(row.json().instruction_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("demo-vla-tiny runs on onnx", async () => {
    const res = await post({ image: img, instruction: "pick", robot_id: "arm-2", model: "demo-vla-tiny" });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ model: "demo-vla-tiny", backend: "onnx", unnorm_key: "bridge_orig" });
    expect(res.json().action).toHaveLength(7);
  });

  it("accepts a data: URL, a PNG, and a json_numpy uint8 HxWx3 array with the same pixels", async () => {
    const dataUrl = await post({ image: `data:image/jpeg;base64,${img}`, ...ok });
    expect(dataUrl.statusCode, dataUrl.body).toBe(200);
    const fromPng = await post({ image: (await png(224, 224, 1)).toString("base64"), ...ok });
    expect(fromPng.statusCode, fromPng.body).toBe(200);
    const arr = encodeJsonNumpy(new Uint8Array(pattern(224, 224, 1)), [224, 224, 3], "|u1");
    const fromArray = await post({ image: arr, ...ok });
    expect(fromArray.statusCode, fromArray.body).toBe(200);
    expect(fromArray.json().backend).toBe("mock");
    // The mock is a function of the bytes received: the same array gives the same model action
    // (the safe action may differ: safety judges each against the robot's previous action).
    expect((await post({ image: arr, ...ok })).json().safety.raw_action).toEqual(fromArray.json().safety.raw_action);
  });

  it("accepts robot_state", async () => {
    const res = await post({
      image: img,
      ...ok,
      robot_state: { ee_position: [0.3, 0.0, 0.2], ee_orientation: [0, 0, 0, 1], gripper: 1 },
    });
    expect(res.statusCode, res.body).toBe(200);
  });

  it("accepts a multipart upload (file part + fields)", async () => {
    const boundary = "----vlatest";
    const field = (name: string, value: string) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const payload = Buffer.concat([
      Buffer.from(
        field("instruction", ok.instruction) +
          field("robot_id", "arm-mp") +
          field("unnorm_key", "bridge_orig") +
          field("robot_state", JSON.stringify({ ee_position: [0.1, 0.2, 0.3] })) +
          `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="frame.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
      ),
      jpegBytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const headers = { "content-type": `multipart/form-data; boundary=${boundary}` };
    const res = await post(payload, headers);
    expect(res.statusCode, res.body).toBe(200);
    const json = (await post({ image: img, ...ok })).json();
    expect(res.json().safety.raw_action).toEqual(json.safety.raw_action);

    const badState = Buffer.concat([
      Buffer.from(
        field("instruction", ok.instruction) +
          field("robot_id", "arm-mp") +
          field("unnorm_key", "bridge_orig") +
          field("robot_state", '{"ee_position":[1,2]}') +
          `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="frame.jpg"\r\n\r\n`,
      ),
      jpegBytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const bad = await post(badState, headers);
    expect(bad.statusCode).toBe(422);
    expect(bad.json().code).toBe("validation_failed");

    const missing = await post(
      Buffer.from(`${field("instruction", "x") + field("robot_id", "a")}--${boundary}--\r\n`),
      headers,
    );
    expect(missing.statusCode).toBe(422);
  });

  it("bounds the multipart file size", async () => {
    const small = await buildInferenceApp({ INFERENCE_UPLOAD_MAX_BYTES: "2048" });
    try {
      const boundary = "----vlabig";
      const payload = Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="instruction"\r\n\r\npick\r\n` +
            `--${boundary}\r\nContent-Disposition: form-data; name="robot_id"\r\n\r\narm\r\n` +
            `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n`,
        ),
        jpegBytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const res = await small.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": small.key, "content-type": `multipart/form-data; boundary=${boundary}` },
        payload,
      });
      expect(res.statusCode).toBe(413);
      expect(res.json().code).toBe("payload_too_large");
    } finally {
      await small.close();
    }
  });
});

describe("POST /v1/inference: bad input", () => {
  const expectProblem = async (
    res: Awaited<ReturnType<typeof post>>,
    status: number,
    code: string,
  ): Promise<Record<string, unknown>> => {
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const body = res.json();
    expect(body.code).toBe(code);
    return body;
  };

  it("malformed JSON -> 400 invalid_json", async () => {
    await expectProblem(await post('{"image": "x", ', { "content-type": "application/json" }), 400, "invalid_json");
  });

  it("a request with a bad body still counts: the key is checked and metered before the body is read", async () => {
    const { key, customerId } = await newKey(t);
    const minuteUsed = async () => {
      const res = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
      expect(res.statusCode, res.body).toBe(200);
      return (res.json() as { minute: { used: number } }).minute.used;
    };
    expect(await minuteUsed()).toBe(0);
    await expectProblem(
      await post('{"image": "x", ', { "content-type": "application/json" }, key),
      400,
      "invalid_json",
    );
    await expectProblem(await post({ image: [1, 2], ...ok }, {}, key), 422, "validation_failed");
    expect(await minuteUsed()).toBe(2);
    // A key of the same customer without the inference scope is refused (403) and costs nothing.
    const adminOnly = await seedKey(t.database, customerId, { scopes: ["admin"] });
    await expectProblem(await post({ image: img, ...ok }, {}, adminOnly.key), 403, "forbidden");
    expect(await minuteUsed()).toBe(2);
  });

  it("wrong types, missing instruction, 1001 characters, bad robot_id -> 422 validation_failed", async () => {
    // (Scalars are coerced to strings by the validator, as on every route; objects and lists are not.)
    await expectProblem(await post({ image: [1, 2], ...ok }), 422, "validation_failed");
    await expectProblem(await post({ image: img, ...ok, instruction: { text: "pick" } }), 422, "validation_failed");
    await expectProblem(await post({ image: img, ...ok, model: ["a", "b"] }), 422, "validation_failed");
    const { instruction: _drop, ...noInstruction } = ok;
    const missing = await expectProblem(await post({ image: img, ...noInstruction }), 422, "validation_failed");
    expect(JSON.stringify(missing.errors)).toContain("/instruction");
    await expectProblem(await post({ image: img, ...ok, instruction: "a".repeat(1001) }), 422, "validation_failed");
    expect((await post({ image: img, ...ok, instruction: "a".repeat(1000) })).statusCode).toBe(200);
    await expectProblem(await post({ image: img, ...ok, robot_id: "arm 1; drop" }), 422, "validation_failed");
    await expectProblem(await post({ image: img, ...ok, robot_id: "" }), 422, "validation_failed");
    await expectProblem(await post({ image: img, ...ok, extra: 1 }), 422, "validation_failed");
  });

  it("bad robot_state -> 422", async () => {
    for (const robot_state of [
      { ee_position: [1, 2] },
      { ee_position: [1, 2, { z: 3 }] },
      { ee_position: [1, 2, 3, 4] },
      { ee_position: [1, 2, 3], gripper: 2 },
      { ee_position: [1, 2, 3], velocity: [0] },
      [1, 2, 3],
    ]) {
      await expectProblem(await post({ image: img, ...ok, robot_state }), 422, "validation_failed");
    }
  });

  it("a body over INFERENCE_BODY_LIMIT_BYTES -> 413 payload_too_large", async () => {
    const huge = { image: "A".repeat(13 * 1024 * 1024), ...ok };
    await expectProblem(await post(huge), 413, "payload_too_large");
  });

  it("corrupt, truncated, non-image and bomb-like images -> 422 invalid_image", async () => {
    await expectProblem(await post({ image: "!!!not base64!!!", ...ok }), 422, "invalid_image");
    await expectProblem(
      await post({ image: Buffer.from("hello world").toString("base64"), ...ok }),
      422,
      "invalid_image",
    );
    const corrupt = Buffer.from(jpegBytes);
    corrupt.fill(0x55, 200, 600);
    const truncated = jpegBytes.subarray(0, Math.floor(jpegBytes.length / 2));
    await expectProblem(await post({ image: truncated.toString("base64"), ...ok }), 422, "invalid_image");
    const bomb = await expectProblem(
      await post({ image: pngHeaderOnly(100_000, 100_000).toString("base64"), ...ok }),
      422,
      "invalid_image",
    );
    expect(String(bomb.detail)).toMatch(/pixel|limit/i);
    const corruptRes = await post({ image: corrupt.toString("base64"), ...ok });
    // A JPEG with garbage in its entropy data may still decode (to noise); a broken header may not.
    expect([200, 422]).toContain(corruptRes.statusCode);
    const badHeader = Buffer.from(jpegBytes);
    badHeader.fill(0xff, 4, 40);
    await expectProblem(await post({ image: badHeader.toString("base64"), ...ok }), 422, "invalid_image");
  });

  it("a json_numpy image of the wrong dtype or shape -> 422", async () => {
    const f32 = encodeJsonNumpy(new Float32Array(4 * 4 * 3), [4, 4, 3]);
    await expectProblem(await post({ image: f32, ...ok }), 422, "invalid_image");
    const gray = encodeJsonNumpy(new Uint8Array(16), [4, 4], "|u1");
    await expectProblem(await post({ image: gray, ...ok }), 422, "invalid_image");
    const short = { __numpy__: Buffer.alloc(10).toString("base64"), dtype: "|u1", shape: [4, 4, 3] };
    await expectProblem(await post({ image: short, ...ok }), 422, "invalid_array");
  });

  it("unknown model -> 404 unknown_model; unnorm_key unknown -> 400 listing the keys, missing -> the model's default", async () => {
    const unknown = await expectProblem(await post({ image: img, ...ok, model: "gpt-robot" }), 404, "unknown_model");
    expect(unknown.available_models).toContain("mock-openvla-7b");
    const { unnorm_key: _k, ...noKey } = ok;
    const defaulted = await post({ image: img, ...noKey });
    expect(defaulted.statusCode).toBe(200);
    expect(defaulted.json().unnorm_key).toBe("bridge_orig");
    const bad = await expectProblem(await post({ image: img, ...ok, unnorm_key: "nope" }), 400, "invalid_unnorm_key");
    expect(bad.valid_unnorm_keys).toEqual(expect.arrayContaining(["bridge_orig"]));
  });

  it("failed inferences are logged with their error code", async () => {
    const other = await newKey(t);
    await post({ image: img, ...ok, model: "gpt-robot", robot_id: "arm-err" }, {}, other.key);
    await post({ image: "!!", ...ok, robot_id: "arm-err" }, {}, other.key);
    await post({ image: img, ...ok, instruction: "a".repeat(1001), robot_id: "arm-err" }, {}, other.key);
    const page = await history(other.key, "?status=error");
    expect(page.data.map((r) => r.error_code).sort()).toEqual(["invalid_image", "unknown_model", "validation_failed"]);
    for (const r of page.data) expect(r).toMatchObject({ status: "error", source: "rest", robot_id: "arm-err" });
  });
});

describe("POST /v1/inference: auth and limits", () => {
  it("401 without a credential, 403 without the inference scope; neither is logged", async () => {
    const none = await t.app.inject({ method: "POST", url: "/v1/inference", payload: { image: img, ...ok } });
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe("unauthorized");
    const c = await newKey(t);
    const admin = await seedKey(t.database, c.customerId, { scopes: ["admin"] });
    const res = await post({ image: img, ...ok }, {}, admin.key);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe("forbidden");
    expect((await history(c.key)).data).toHaveLength(0);
  });

  it("429 after the per-minute limit, with RateLimit headers; rejected requests are not logged", async () => {
    const c = await newKey(t, { tier: "free", perMinute: 2 });
    for (let i = 0; i < 2; i++) expect((await post({ image: img, ...ok }, {}, c.key)).statusCode).toBe(200);
    const limited = await post({ image: img, ...ok }, {}, c.key);
    expect(limited.statusCode).toBe(429);
    expect(limited.json().code).toBe("quota_exceeded");
    expect(limited.headers["retry-after"]).toBeDefined();
    expect(limited.headers.ratelimit).toBeDefined();
    const again = await post({ image: "garbage", ...ok }, {}, c.key);
    expect(again.statusCode).toBe(429);
    t.clock.advance(61_000);
    const page = await history(c.key);
    expect(page.data).toHaveLength(2);
    expect(page.data.every((r) => r.status === "ok")).toBe(true);
  });

  it("counts requests per source in metrics", async () => {
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.body).toMatch(
      /vla_inference_api_requests_total\{source="rest",model="mock-openvla-7b",outcome="ok"\} \d+/,
    );
    expect(res.body).toMatch(
      /vla_inference_api_requests_total\{source="rest",model="unknown",outcome="unknown_model"\} \d+/,
    );
  });
});
