import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import type { NdArray } from "../../src/modules/inference/ndarray.ts";
import { PROJECT_ROOT } from "../../src/modules/models/registry.ts";
import { streamRegistries } from "../../src/modules/streaming/streaming.module.ts";
import { seedCustomer, seedKey } from "../helpers/limits.ts";
import {
  buildStreamApp,
  Client,
  eventually,
  flushLogs,
  jpeg,
  newKey,
  rawUpgrade,
  type StreamTestContext,
  started,
} from "./helpers.ts";

/** A registry with the default mock and a chunked mock (H = 4). */
function modelsConfig(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vla-models-"));
  const stats = path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json");
  const file = path.join(dir, "models.json");
  const model = (id: string, chunk: number, latency = 0) => ({
    id,
    backend: { kind: "mock", latency_ms: latency },
    action: { dim: 7, chunk },
    dataset_statistics: stats,
    default_unnorm_key: "bridge_orig",
  });
  writeFileSync(
    file,
    JSON.stringify({
      default_model: "single",
      models: [
        model("single", 1),
        model("chunky", 4),
        model("slow", 1, 1500),
        model("paced", 1, 300),
        { ...model("undecided", 1), default_unnorm_key: null },
        // One request per batch: a second concurrent observation waits a whole model run in the queue.
        { ...model("serial", 1, 200), batching: { max_batch_size: 1, max_wait_ms: 0 } },
      ],
    }),
  );
  return file;
}

let t: StreamTestContext;
let pixels: Uint8Array;
beforeAll(async () => {
  t = await buildStreamApp({ MODELS_CONFIG: modelsConfig() });
  pixels = new Uint8Array(224 * 224 * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 31) % 251;
});
afterAll(async () => {
  await t?.close();
});

const image = (data = pixels) => ({ data, shape: [224, 224, 3] });

async function openpi(query = "", headers: Record<string, string> = { authorization: `Api-Key ${t.key}` }) {
  const c = new Client(`${t.baseUrl}/v1/openpi${query}`, headers);
  await c.opened();
  return c;
}

const decoded = (c: Client, i: number) =>
  unpackMsgpackNumpy((c.raw[i] as { data: Buffer }).data) as Record<string, unknown>;

async function nth(c: Client, n: number): Promise<void> {
  await c.next(() => c.raw.length >= n);
}

describe("WS /v1/openpi", () => {
  it("GET /v1/openpi/healthz answers OK like openpi", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/openpi/healthz" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe("OK\n");
  });

  it("metadata on connect, then one reply per observation with (H, D) float32 actions and timings", async () => {
    // No robot_id: the safety gate has no previous action to compare with, so equal inputs give equal actions.
    const c = await openpi("?model=chunky");
    await nth(c, 1);
    expect(c.raw[0]?.isBinary).toBe(true);
    expect(decoded(c, 0)).toEqual({
      server: "vla-inference-api",
      model: "chunky",
      backend: "mock",
      action_dim: 7,
      action_horizon: 4,
      unnorm_key: "bridge_orig",
      unnorm_key_source: "model_default",
      unnorm_keys: ["bridge_orig", "fractal20220817_data"],
      idle_timeout_ms: 300_000,
    });
    c.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "pick up the fork" }));
    await nth(c, 2);
    const r1 = decoded(c, 1);
    const actions = r1.actions as NdArray;
    expect(actions.dtype).toBe("<f4");
    expect(actions.shape).toEqual([4, 7]);
    expect(r1.policy_timing).toEqual({ infer_ms: expect.any(Number) });
    expect(Object.keys(r1.server_timing as object)).toEqual(["infer_ms", "queue_ms"]);
    // prompt as bytes, image under the DROID key: same image and prompt, same actions
    c.ws.send(
      packMsgpackNumpy({
        "observation/exterior_image_1_left": image(),
        "observation/wrist_image_left": image(new Uint8Array(224 * 224 * 3)),
        prompt: Buffer.from("pick up the fork"),
      }),
    );
    await nth(c, 3);
    const r2 = decoded(c, 2);
    expect(Object.keys(r2.server_timing as object)).toEqual(["infer_ms", "queue_ms", "prev_total_ms"]);
    expect([...(r2.actions as NdArray).data]).toEqual([...actions.data]);
    c.close();
  });

  it("observations are logged with source openpi and the robot_id of the query", async () => {
    const c = await openpi("?model=chunky&robot_id=arm-pi");
    await nth(c, 1);
    c.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "pick up the fork" }));
    await nth(c, 2);
    const actions = decoded(c, 1).actions as NdArray;
    c.close();
    await flushLogs(t.app);
    const res = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history?source=openpi&robot_id=arm-pi",
      headers: { "x-api-key": t.key },
    });
    const rows = res.json().data as { action_chunk: number[][]; model: string; robot_id: string }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ model: "chunky", robot_id: "arm-pi" });
    expect(rows[0]?.action_chunk.flat().map((v) => Math.fround(v))).toEqual([...actions.data]);
  });

  it("the reply's bytes follow the reference layout: bin marker keys, raw little-endian f4 data", async () => {
    const c = await openpi();
    await nth(c, 1);
    c.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "stack" }));
    await nth(c, 2);
    const bytes = c.raw[1]?.data as Buffer;
    const actions = (decoded(c, 1).actions as NdArray).data as Float32Array;
    expect(actions).toHaveLength(7);
    const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
    const data = Buffer.from(actions.buffer, actions.byteOffset, actions.byteLength);
    const expected = Buffer.concat([
      hex("85"), // map(5): actions, policy_timing, server_timing, safety, inference_id
      hex("a7 616374696f6e73"), // "actions"
      hex("84"),
      hex("c4 0b 5f5f6e6461727261795f5f c3"), // bin"__ndarray__": true
      hex("c4 04 64617461 c4 1c"), // bin"data": bin(28)
      data,
      hex("c4 05 6474797065 a3 3c6634"), // bin"dtype": "<f4"
      hex("c4 05 7368617065 92 01 07"), // bin"shape": [1, 7]
      hex("ad 706f6c6963795f74696d696e67"), // "policy_timing"
    ]);
    expect(bytes.subarray(0, expected.length).toString("hex")).toBe(expected.toString("hex"));
    c.close();
  });

  it("str-keyed numpy markers, channel-first images and the images/<camera> layout are accepted", async () => {
    const c = await openpi();
    await nth(c, 1);
    const strKeyed = {
      __ndarray__: true,
      data: Buffer.from(pixels),
      dtype: "|u1",
      shape: [224, 224, 3],
    };
    c.ws.send(pack({ "observation/image": strKeyed, prompt: "stack" }));
    await nth(c, 2);
    const hwc = decoded(c, 1).actions as NdArray;
    const chw = new Uint8Array(pixels.length);
    const plane = 224 * 224;
    for (let p = 0; p < plane; p++) for (let ch = 0; ch < 3; ch++) chw[ch * plane + p] = pixels[p * 3 + ch] as number;
    c.ws.send(packMsgpackNumpy({ images: { cam_high: { data: chw, shape: [3, 224, 224] } }, prompt: "stack" }));
    await nth(c, 3);
    expect([...(decoded(c, 2).actions as NdArray).data]).toEqual([...hwc.data]);
    c.ws.send(packMsgpackNumpy({ image: await jpeg(224, 224, 1), prompt: "stack" }));
    await nth(c, 4);
    expect((decoded(c, 3).actions as NdArray).shape).toEqual([1, 7]);
    c.close();
  });

  it("episode control messages are acknowledged without inference", async () => {
    const c = await openpi();
    await nth(c, 1);
    c.ws.send(packMsgpackNumpy({ __ctrl__: "episode_start", __experiment__: "e", __task__: "t", __episode_id__: 3 }));
    await nth(c, 2);
    expect(decoded(c, 1)).toEqual({ __ack__: "episode_start" });
    c.ws.send(packMsgpackNumpy({ __ctrl__: "episode_end", __success__: true }));
    await nth(c, 3);
    expect(decoded(c, 2)).toEqual({ __ack__: "episode_end" });
    c.ws.send(packMsgpackNumpy({ __ctrl__: "reboot" }));
    await nth(c, 4);
    expect(decoded(c, 3)).toEqual({ __ack__: "ignored" });
    c.close();
  });

  const bad: [string, () => Buffer | string, string][] = [
    ["no image", () => packMsgpackNumpy({ prompt: "stack" }), "invalid_image"],
    ["no prompt", () => packMsgpackNumpy({ "observation/image": image() }), "validation_failed"],
    ["not msgpack", () => Buffer.from([0xc1]), "invalid_array"],
    ["a text frame", () => "hello", "bad_request"],
    [
      "an object dtype",
      () =>
        pack({
          "observation/image": { __ndarray__: true, data: Buffer.alloc(8), dtype: "|O", shape: [1] },
          prompt: "x",
        }),
      "invalid_array",
    ],
  ];
  for (const [name, payload, code] of bad) {
    it(`${name}: the error as a text frame, then close 1011`, async () => {
      const c = await openpi();
      await nth(c, 1);
      c.ws.send(payload());
      const closed = await c.closed;
      expect(closed.code).toBe(1011);
      const last = c.raw[c.raw.length - 1];
      expect(last?.isBinary).toBe(false);
      expect(last?.data.toString()).toMatch(new RegExp(`^${code}: `));
    });
  }

  /** A refused upgrade: the HTTP status line, headers and problem document (what the stock client sees). */
  async function refused(query: string, headers: Record<string, string> = { authorization: `Api-Key ${t.key}` }) {
    const c = rawUpgrade(t.baseUrl, `/v1/openpi${query}`, headers);
    const head = await c.head;
    const body = await head.body;
    c.socket.destroy();
    // A Content-Length (no chunked coding) so every version of Python `websockets` reads the body.
    expect(head.headers).toMatch(/\r\ncontent-length: \d+/i);
    expect(head.headers).toMatch(/\r\ncontent-type: application\/problem\+json/i);
    return { status: head.status, problem: JSON.parse(body) as Record<string, unknown> };
  }

  it("authentication is checked on the upgrade: none or a wrong key -> HTTP 401; X-API-Key and Bearer work too", async () => {
    expect(await refused("", {})).toMatchObject({ status: 401, problem: { code: "unauthorized" } });
    const wrong = await refused("", { authorization: "Api-Key vla_live_1111111111111111111111111111111111111111" });
    expect(wrong).toMatchObject({ status: 401, problem: { code: "invalid_api_key" } });
    // What a WebSocket client reports: the status, not a text frame.
    const none = new Client(`${t.baseUrl}/v1/openpi`);
    await expect(none.opened()).rejects.toThrow(/Unexpected server response: 401/);
    const variants: Record<string, string>[] = [{ "x-api-key": t.key }, { authorization: `Bearer ${t.key}` }];
    for (const headers of variants) {
      const c = await openpi("", headers);
      await nth(c, 1);
      expect(decoded(c, 0).model).toBe("single");
      c.close();
    }
  });

  it("a key without the inference scope -> HTTP 403 on the upgrade", async () => {
    const customerId = await seedCustomer(t.database, { tier: "enterprise" });
    const { key } = await seedKey(t.database, customerId, { scopes: ["admin"] });
    expect(await refused("", { authorization: `Api-Key ${key}` })).toMatchObject({
      status: 403,
      problem: { code: "forbidden" },
    });
  });

  it("model and unnorm_key are resolved on the upgrade: 404 unknown_model, 400 invalid_unnorm_key", async () => {
    expect(await refused("?model=nope")).toMatchObject({ status: 404, problem: { code: "unknown_model" } });
    expect(await refused("?unnorm_key=kuka")).toMatchObject({
      status: 400,
      problem: { code: "invalid_unnorm_key", valid_unnorm_keys: ["bridge_orig", "fractal20220817_data"] },
    });
    // Several keys and no default: the caller must name one.
    const undecided = await refused("?model=undecided");
    expect(undecided).toMatchObject({ status: 400, problem: { code: "invalid_unnorm_key" } });
    expect(undecided.problem.detail).toMatch(/several unnorm_keys and no default/);
    const res = await t.app.inject({ method: "GET", url: "/v1/openpi?colour=blue" });
    expect(res.statusCode).toBe(400);
  });

  it("session slots are taken on the upgrade: one too many -> HTTP 429; closing or a failed handshake frees them", async () => {
    const { key, customerId } = await newKey(t, { tier: "free" }); // STREAM_MAX_SESSIONS_FREE = 2
    const auth = { authorization: `Api-Key ${key}` };
    const registry = streamRegistries.get(t.app.platform);
    // Admitted, then the WebSocket handshake itself fails (an unsupported version): the slot comes back.
    for (let i = 0; i < 3; i++) {
      const bad = rawUpgrade(t.baseUrl, "/v1/openpi", { ...auth, "Sec-WebSocket-Version": "12" });
      expect((await bad.head).status).toBe(400);
      await bad.serverClosed;
      bad.socket.destroy();
    }
    expect(await eventually(async () => registry?.sessionsOf(customerId) === 0)).toBe(true);
    const a = await openpi("", auth);
    const b = await openpi("", auth);
    await nth(a, 1);
    await nth(b, 1);
    expect(await refused("", auth)).toMatchObject({ status: 429, problem: { code: "too_many_sessions" } });
    a.close();
    expect(await eventually(async () => registry?.sessionsOf(customerId) === 1)).toBe(true);
    const c = await openpi("", auth);
    await nth(c, 1);
    b.close();
    c.close();
  });

  it("every reply carries the safety verdict and the inference_id, beside the actions", async () => {
    // A velocity limit the mock's actions always exceed: safety clamps, and says so.
    const put = await t.app.inject({
      method: "PUT",
      url: "/v1/robots/arm-tight/safety-profile",
      headers: { authorization: `Bearer owner:${t.customerId}` },
      payload: {
        max_linear_velocity: 0.0001,
        policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" },
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const c = await openpi("?robot_id=arm-tight");
    await nth(c, 1);
    c.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "pick up the fork" }));
    await nth(c, 2);
    const reply = decoded(c, 1);
    c.close();
    expect(Object.keys(reply)).toEqual(["actions", "policy_timing", "server_timing", "safety", "inference_id"]);
    const safety = reply.safety as { violations: { rule: string; severity: string }[] };
    expect(safety).toMatchObject({ status: "clamped", action_taken: "clamped" });
    expect(safety.violations.length).toBeGreaterThan(0);
    for (const v of safety.violations) expect(Object.keys(v)).toEqual(["rule", "severity"]);
    expect(safety.violations.map((v) => v.rule)).toContain("linear_velocity");
    // The id names this inference's log row.
    await flushLogs(t.app);
    const row = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${String(reply.inference_id)}`,
      headers: { "x-api-key": t.key },
    });
    expect(row.statusCode, row.body).toBe(200);
    expect(row.json()).toMatchObject({ source: "openpi", robot_id: "arm-tight", safety_status: "clamped" });
    // Clean reply frames with nothing to report still carry the verdict.
    const clean = await openpi();
    await nth(clean, 1);
    clean.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "stack" }));
    await nth(clean, 2);
    expect(decoded(clean, 1).safety).toMatchObject({ action_taken: expect.any(String), violations: expect.any(Array) });
    clean.close();
  });

  it("server_timing.infer_ms is the policy's own time (preprocessing + model); the queue wait is queue_ms", async () => {
    // Two observations at once on a model that runs one at a time: one of them waits in the queue.
    const a = await openpi("?model=serial");
    const b = await openpi("?model=serial");
    await nth(a, 1);
    await nth(b, 1);
    a.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "a" }));
    b.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "b" }));
    await nth(a, 2);
    await nth(b, 2);
    const replies = [decoded(a, 1), decoded(b, 1)];
    a.close();
    b.close();
    await flushLogs(t.app);
    for (const r of replies) {
      const res = await t.app.inject({
        method: "GET",
        url: `/v1/inference/${String(r.inference_id)}`,
        headers: { "x-api-key": t.key },
      });
      const row = (res.json() as { timing: { preprocess_ms: number; queue_ms: number; model_ms: number } }).timing;
      const server = r.server_timing as { infer_ms: number; queue_ms: number };
      // The log row holds the engine's own measurements of this inference (stored as float4).
      expect(server.infer_ms).toBeCloseTo(row.preprocess_ms + row.model_ms, 1);
      expect(server.queue_ms).toBeCloseTo(row.queue_ms, 1);
      expect((r.policy_timing as { infer_ms: number }).infer_ms).toBeCloseTo(row.model_ms, 1);
    }
  });

  it("observations do not spend the REST request windows (sessions are metered in stream time)", async () => {
    const { key } = await newKey(t, { tier: "enterprise", perMinute: 1 });
    const c = await openpi("", { authorization: `Api-Key ${key}` });
    await nth(c, 1);
    for (let i = 2; i <= 4; i++) {
      c.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "stack" }));
      await nth(c, i);
    }
    expect(c.raw.slice(1).every((r) => r.isBinary)).toBe(true);
    c.close();
  });

  it("inference on one connection never blocks another (unlike openpi)", async () => {
    const a = await openpi("?model=slow");
    const b = await openpi();
    await nth(a, 1);
    await nth(b, 1);
    // a's observation sits in a slow model; b's round trips complete meanwhile.
    a.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: "a" }));
    for (let i = 0; i < 3; i++) {
      b.ws.send(packMsgpackNumpy({ "observation/image": image(), prompt: `b${i}` }));
      await nth(b, 2 + i);
    }
    expect(a.raw).toHaveLength(1);
    await nth(a, 2);
    a.close();
    b.close();
  });
});

describe("WS /v1/stream scheduling end to end (a 300 ms model)", () => {
  it("latest-frame-wins: the waiting frame is superseded, must_go frames are not", async () => {
    const img = (await jpeg(224, 224, 1)).toString("base64");
    const { c } = await started(t, { model: "paced" });
    c.json({ type: "frame", seq: 1, image: img });
    c.json({ type: "frame", seq: 2, image: img });
    c.json({ type: "frame", seq: 3, image: img, must_go: true });
    c.json({ type: "frame", seq: 4, image: img });
    c.json({ type: "frame", seq: 5, image: img, must_go: true });
    c.json({ type: "frame", seq: 6, image: img });
    await c.type("action", (m) => m.seq === 6);
    expect(c.of("action").map((m) => m.seq)).toEqual([1, 3, 5, 6]);
    expect(c.of("dropped")).toEqual([
      { type: "dropped", seq: 2, reason: "superseded" },
      { type: "dropped", seq: 4, reason: "superseded" },
    ]);
    c.close();
  });
});

describe("WS /v1/stream with an action-chunk model", () => {
  it("action_chunk is sent and blended per timestep across frames", async () => {
    const img1 = (await jpeg(224, 224, 1)).toString("base64");
    const img2 = (await jpeg(224, 224, 2)).toString("base64");
    const { c, s } = await started(t, { model: "chunky", chunk_aggregation: "latest" });
    expect(s.model).toMatchObject({ id: "chunky", action: { dim: 7, chunk: 4 } });
    c.json({ type: "frame", seq: 1, image: img1 });
    const a1 = await c.type("action", (m) => m.seq === 1);
    expect(a1.action_chunk).toHaveLength(4);
    expect((a1.action_chunk as number[][])[0]).toEqual(a1.action);
    c.close();

    // weighted: frame 2 overlaps frame 1's steps 1..3 -> 0.3 old + 0.7 new
    const w = await started(t, { model: "chunky", chunk_aggregation: "weighted" });
    w.c.json({ type: "frame", seq: 1, image: img1 });
    // safety.raw_action is the blended chunk before safety (which may clamp what is sent).
    const raw = (m: Record<string, unknown>) => (m.safety as { raw_action: number[][] }).raw_action;
    const w1 = raw(await w.c.type("action", (m) => m.seq === 1));
    w.c.json({ type: "frame", seq: 2, image: img2 });
    const w2 = raw(await w.c.type("action", (m) => m.seq === 2));
    const l = await started(t, { model: "chunky", chunk_aggregation: "latest", robot_id: "arm-fresh" });
    l.c.json({ type: "frame", seq: 2, image: img2 });
    const fresh = raw(await l.c.type("action", (m) => m.seq === 2));
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < 7; i++) {
        const expected = 0.3 * (w1[k + 1]?.[i] as number) + 0.7 * (fresh[k]?.[i] as number);
        expect(w2[k]?.[i]).toBeCloseTo(expected, 9);
      }
    }
    expect(w2[3]).toEqual(fresh[3]);
    w.c.close();
    l.c.close();
  });
});
