import { pack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildStreamApp, connect, flushLogs, jpeg, type StreamTestContext, started } from "./helpers.ts";

let t: StreamTestContext;
let img: Buffer;
beforeAll(async () => {
  t = await buildStreamApp();
  img = await jpeg(224, 224, 1);
});
afterAll(async () => {
  await t?.close();
});

describe("WS /v1/stream: the protocol", () => {
  it("start -> started, frame -> action, stats, stop -> stopped and close 1000 (JSON)", async () => {
    const { c, s } = await started(t, { unnorm_key: "bridge_orig" });
    expect(s).toMatchObject({
      type: "started",
      robot_id: "arm-1",
      target_fps: 10,
      chunk_aggregation: "weighted",
      smoothing: { method: "none" },
      model: { id: "mock-openvla-7b", backend: "mock", action: { dim: 7, chunk: 1 }, unnorm_key: "bridge_orig" },
    });
    expect(typeof s.session_id).toBe("string");
    expect(s.limits).toMatchObject({ max_frame_bytes: 4 * 1024 * 1024, idle_timeout_ms: 60_000 });
    c.json({ type: "frame", seq: 1, image: img.toString("base64"), timestamp: 12.5 });
    const a = await c.type("action");
    expect(a).toMatchObject({ seq: 1, timestamp: 12.5 });
    expect(a.action).toHaveLength(7);
    expect(Object.keys(a.timing as object).sort()).toEqual(["model_ms", "preprocess_ms", "queue_ms", "total_ms"]);
    expect((a.safety as { status: string }).status).toBeDefined();
    c.json({ type: "stats" });
    const st = (await c.type("stats")).stats as Record<string, unknown>;
    expect(st).toMatchObject({
      frames_received: 1,
      frames_inferred: 1,
      frames_dropped: { superseded: 0, rate_ceiling: 0, overloaded: 0 },
      target_fps: 10,
    });
    expect((st.latency_ms as { p50: number }).p50).toBeGreaterThanOrEqual(0);
    c.json({ type: "stop" });
    const stopped = await c.type("stopped");
    expect(stopped).toMatchObject({ reason: "client_stop", stats: { frames_inferred: 1 } });
    expect((await c.closed).code).toBe(1000);
  });

  it("msgpack binary frames carry raw image bytes and get msgpack answers; logged with source stream", async () => {
    const c = await connect(t, t.key);
    c.msgpack({ type: "start", robot_id: "arm-mp", instruction: "stack", unnorm_key: "bridge_orig" });
    await c.type("started");
    c.msgpack({ type: "frame", seq: 7, image: img });
    const a = await c.type("action");
    expect(a.seq).toBe(7);
    expect(c.raw.every((r) => r.isBinary)).toBe(true);
    c.close();
    await flushLogs(t.app);
    const res = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history?source=stream&robot_id=arm-mp",
      headers: { "x-api-key": t.key },
    });
    const rows = res.json().data as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ source: "stream", status: "ok", action: a.action, robot_id: "arm-mp" });
  });

  it("the same frame gives the same action on both encodings and over REST", async () => {
    const { c } = await started(t, { unnorm_key: "bridge_orig", robot_id: "arm-same" });
    c.json({ type: "frame", seq: 1, image: img.toString("base64") });
    const a = await c.type("action");
    const rest = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": t.key },
      payload: {
        image: img.toString("base64"),
        instruction: "pick up the red block",
        robot_id: "arm-same",
        unnorm_key: "bridge_orig",
      },
    });
    // The model's output before safety (which may clamp against the robot's previous action).
    expect(rest.json().safety.raw_action).toEqual((a.safety as { raw_action: number[] }).raw_action);
    c.close();
  });

  it("bad frames get recoverable error messages with stable codes; the session goes on", async () => {
    const { c } = await started(t);
    c.json({ type: "frame", seq: 1, image: "%%%not-base64" });
    expect(await c.type("error", (m) => m.seq === 1)).toMatchObject({ code: "invalid_image" });
    c.json({ type: "frame", seq: 2 });
    const e2 = await c.type("error", (m) => m.seq === 2);
    expect(e2).toMatchObject({ code: "validation_failed" });
    expect(e2.errors).toEqual([{ in: "body", path: "/image", message: "is required" }]);
    c.json({ type: "frame", seq: 3, image: img.toString("base64"), bogus: 1 });
    expect(await c.type("error", (m) => m.seq === 3)).toMatchObject({ code: "validation_failed" });
    c.json({ type: "frame", seq: 4, image: Buffer.from("not an image").toString("base64") });
    expect(await c.type("error", (m) => m.seq === 4)).toMatchObject({ code: "invalid_image" });
    c.json({ type: "frame", seq: 5, image: img.toString("base64") });
    expect(await c.type("action")).toMatchObject({ seq: 5 });
    c.json({ type: "frame", seq: 5, image: img.toString("base64") });
    const stale = await c.type("error", (m) => m.seq === 5);
    expect(stale.code).toBe("validation_failed");
    expect(JSON.stringify(stale.errors)).toContain("/seq");
    c.json({ type: "stats" });
    const st = (await c.type("stats")).stats as Record<string, unknown>;
    expect(st).toMatchObject({ frames_received: 6, frames_inferred: 1, frames_failed: 5 });
    c.close();
  });

  it("start errors are recoverable: unknown model, bad unnorm_key, invalid options", async () => {
    const c = await connect(t, t.key);
    c.json({ type: "start", robot_id: "arm-1", model: "nope" });
    expect(await c.type("error")).toMatchObject({ code: "unknown_model" });
    c.json({ type: "start", robot_id: "arm-1", unnorm_key: "nope" });
    expect(await c.type("error", (m) => m.code === "invalid_unnorm_key")).toBeDefined();
    c.json({
      type: "start",
      robot_id: "arm 1",
      target_fps: 0,
      smoothing: { method: "median" },
      chunk_aggregation: "x",
    });
    const v = await c.type("error", (m) => m.code === "validation_failed");
    const paths = (v.errors as { path: string }[]).map((e) => e.path).sort();
    expect(paths).toEqual(["/chunk_aggregation", "/robot_id", "/smoothing/method", "/target_fps"]);
    c.json({ type: "start", robot_id: "arm-1", instruction: "go", unnorm_key: "bridge_orig" });
    expect(await c.type("started")).toBeDefined();
    c.close();
  });

  it("stats and stop with unknown members get validation_failed and the session stays", async () => {
    const { c } = await started(t);
    c.json({ type: "stats", verbose: true });
    expect(await c.type("error")).toMatchObject({ code: "validation_failed" });
    c.json({ type: "stats" });
    expect(await c.type("stats")).toBeDefined();
    c.close();
  });

  it("every action carries the safety verdict (status, action_taken, violations) and its inference_id", async () => {
    // A velocity limit the mock's actions always exceed: safety clamps, and the action says so.
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
    const { c } = await started(t, { robot_id: "arm-tight" });
    c.json({ type: "frame", seq: 1, image: img.toString("base64") });
    const a = await c.type("action");
    c.close();
    const safety = a.safety as {
      status: string;
      action_taken: string;
      violations: { type: string; severity: string }[];
    };
    expect(safety).toMatchObject({ status: "clamped", action_taken: "clamped" });
    expect(safety.violations.map((v) => v.type)).toContain("linear_velocity");
    expect(safety.violations.every((v) => typeof v.severity === "string")).toBe(true);
    await flushLogs(t.app);
    const row = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${String(a.inference_id)}`,
      headers: { "x-api-key": t.key },
    });
    expect(row.statusCode, row.body).toBe(200);
    expect(row.json()).toMatchObject({ source: "stream", robot_id: "arm-tight", safety_status: "clamped" });
  });

  it("a frame without any instruction is refused", async () => {
    const c = await connect(t, t.key);
    c.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig" });
    await c.type("started");
    c.json({ type: "frame", seq: 1, image: img.toString("base64") });
    const e = await c.type("error");
    expect(e).toMatchObject({ code: "validation_failed", seq: 1 });
    c.json({ type: "frame", seq: 2, image: img.toString("base64"), instruction: "open the drawer" });
    expect(await c.type("action")).toMatchObject({ seq: 2 });
    c.close();
  });
});

describe("WS /v1/stream: protocol violations close the socket", () => {
  const cases: [string, (c: Awaited<ReturnType<typeof connect>>) => void, number][] = [
    ["text that is not JSON", (c) => c.ws.send("{nope"), 1003],
    ["binary that is not msgpack", (c) => c.ws.send(Buffer.from([0xc1])), 1003],
    ["a JSON array", (c) => c.ws.send("[1,2]"), 1003],
    ["an unknown type", (c) => c.json({ type: "dance" }), 1003],
    ["a frame before start", (c) => c.json({ type: "frame", seq: 1, image: "" }), 1002],
    ["stats before start", (c) => c.json({ type: "stats" }), 1002],
  ];
  for (const [name, send, code] of cases) {
    it(`${name} -> ${code}`, async () => {
      const c = await connect(t, t.key);
      send(c);
      const closed = await c.closed;
      expect(closed.code).toBe(code);
      expect(closed.reason.length).toBeGreaterThan(0);
    });
  }

  it("a second start -> 1002", async () => {
    const { c } = await started(t);
    c.json({ type: "start", robot_id: "arm-2", unnorm_key: "bridge_orig" });
    expect((await c.closed).code).toBe(1002);
  });

  it("a message larger than STREAM_MAX_FRAME_BYTES -> 1009", async () => {
    const small = await buildStreamApp({ STREAM_MAX_FRAME_BYTES: "2048" });
    try {
      const c = await connect(small, small.key);
      c.ws.send(pack({ type: "frame", seq: 1, image: Buffer.alloc(4096) }));
      expect((await c.closed).code).toBe(1009);
    } finally {
      await small.close();
    }
  });

  it("a plain GET answers 426 upgrade_required", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/stream" });
    expect(res.statusCode).toBe(426);
    expect(res.json().code).toBe("upgrade_required");
  });
});

describe("OpenAPI", () => {
  it("documents the WebSocket upgrade GETs and the openpi health check", async () => {
    const res = await t.app.inject({ method: "GET", url: "/openapi.json" });
    const doc = res.json() as { paths: Record<string, { get?: { description?: string; tags?: string[] } }> };
    for (const p of ["/v1/stream", "/v1/openpi", "/", "/healthz", "/v1/openpi/healthz"]) {
      expect(doc.paths[p]?.get?.tags).toEqual(["streaming"]);
      expect(doc.paths[p]?.get?.description?.length).toBeGreaterThan(40);
    }
    expect(doc.paths["/v1/stream"]?.get?.description).toContain("WebSocket");
  });
});
