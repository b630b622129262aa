import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { packMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { streamRegistries } from "../../src/modules/streaming/streaming.module.ts";
import { seedCustomer, seedKey } from "../helpers/limits.ts";
import { buildStreamApp, Client, connect, jpeg, newKey, type StreamTestContext, started } from "./helpers.ts";

let t: StreamTestContext;
let img: string;
beforeAll(async () => {
  t = await buildStreamApp({
    STREAM_AUTH_TIMEOUT_MS: "1000",
    STREAM_IDLE_TIMEOUT_MS: "2000",
    OPENPI_IDLE_TIMEOUT_MS: "2000",
    STREAM_HEARTBEAT_MS: "500",
    STREAM_STATS_INTERVAL_MS: "150",
  });
  img = (await jpeg(224, 224, 2)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

async function until(pred: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("WS /v1/stream: authentication", () => {
  it("an auth message (browsers) authenticates; replies use its encoding", async () => {
    const c = await connect(t, null);
    c.json({ type: "auth", api_key: t.key });
    expect(await c.type("authenticated")).toBeDefined();
    c.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig", instruction: "go" });
    expect(await c.type("started")).toBeDefined();
    c.close();
  });

  it("Authorization: Bearer and Api-Key headers work like X-API-Key", async () => {
    for (const header of [`Bearer ${t.key}`, `Api-Key ${t.key}`]) {
      const c = new Client(`${t.baseUrl}/v1/stream`, { authorization: header });
      await c.opened();
      c.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig", instruction: "go" });
      expect(await c.type("started")).toBeDefined();
      c.close();
    }
  });

  const failures: [string, Record<string, string>, string][] = [
    ["an unknown key", { "x-api-key": "vla_live_1111111111111111111111111111111111111111" }, "invalid_api_key"],
    ["a malformed key", { "x-api-key": "vla_live_short" }, "malformed_api_key"],
    ["a malformed Authorization header", { authorization: "Basic a b c" }, "unauthorized"],
  ];
  for (const [name, headers, code] of failures) {
    it(`${name} in the headers -> error ${code}, close 1008`, async () => {
      const c = new Client(`${t.baseUrl}/v1/stream`, headers);
      await c.opened();
      expect(await c.type("error")).toMatchObject({ code });
      const closed = await c.closed;
      expect(closed.code).toBe(1008);
      expect(closed.reason).toContain(code);
      for (const v of Object.values(headers)) expect(closed.reason).not.toContain(v.split(" ").pop());
    });
  }

  it("a key without the inference scope -> forbidden, 1008", async () => {
    const customerId = await seedCustomer(t.database, { tier: "enterprise" });
    const { key } = await seedKey(t.database, customerId, { scopes: ["admin"] });
    const c = await connect(t, key);
    expect(await c.type("error")).toMatchObject({ code: "forbidden" });
    expect((await c.closed).code).toBe(1008);
  });

  it("a wrong key in the auth message -> 1008", async () => {
    const c = await connect(t, null);
    c.json({ type: "auth", api_key: "vla_live_1111111111111111111111111111111111111111" });
    expect(await c.type("error")).toMatchObject({ code: "invalid_api_key" });
    expect((await c.closed).code).toBe(1008);
  });

  it("no auth message before the deadline -> 1008", async () => {
    const c = await connect(t, null);
    expect(await c.type("error")).toMatchObject({ code: "unauthorized" });
    expect((await c.closed).code).toBe(1008);
  });

  it("another message before auth -> 1008", async () => {
    const c = await connect(t, null);
    c.json({ type: "start", robot_id: "arm-1" });
    expect((await c.closed).code).toBe(1008);
  });

  it("a second auth message -> 1002", async () => {
    const c = await connect(t, null);
    c.json({ type: "auth", api_key: t.key });
    await c.type("authenticated");
    c.json({ type: "auth", api_key: t.key });
    expect((await c.closed).code).toBe(1002);
  });
});

describe("WS /v1/stream: limits", () => {
  it("max sessions per customer by tier; other customers are not affected; a closed session frees its slot", async () => {
    const a = await newKey(t, { tier: "free" });
    const b = await newKey(t, { tier: "free" });
    const first = await connect(t, a.key);
    const second = await connect(t, a.key);
    const registry = streamRegistries.get(t.app.platform);
    // Both hold their slot (taking one is asynchronous with Redis) before the first one goes.
    await until(() => registry?.sessionsOf(a.customerId) === 2);
    // A protocol violation closes the first one (stats before start): its slot is free again.
    first.json({ type: "stats" });
    await first.closed;
    await until(() => registry?.sessionsOf(a.customerId) === 1);
    const third = await connect(t, a.key);
    const other = await connect(t, b.key);
    const fourth = await connect(t, a.key);
    expect(await fourth.type("error")).toMatchObject({ code: "too_many_sessions" });
    expect((await fourth.closed).code).toBe(1008);
    other.json({ type: "start", robot_id: "arm-b", unnorm_key: "bridge_orig", instruction: "go" });
    expect(await other.type("started")).toBeDefined();
    expect(third.ws.readyState).toBe(WebSocket.OPEN);
    second.close();
    third.close();
    other.close();
  });

  it("stream frames do not spend the REST request windows (sessions are metered in stream time)", async () => {
    const { key } = await newKey(t, { tier: "enterprise", perMinute: 2 });
    const { c } = await started(t, {}, key);
    for (const seq of [1, 2, 3, 4, 5]) {
      c.json({ type: "frame", seq, image: img, must_go: true });
      await c.next((m) => m.seq === seq);
    }
    expect(c.of("action").map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    c.close();
    const usage = await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } });
    expect(usage.json().minute).toMatchObject({ used: 0, limit: 2 });
  });

  it("stats are pushed every STREAM_STATS_INTERVAL_MS", async () => {
    const { c } = await started(t);
    const pushed = await c.type("stats");
    expect(pushed.stats).toMatchObject({ frames_received: 0, target_fps: 10 });
    c.close();
  });

  it("an idle session is stopped with its stats and closed 1000", async () => {
    const { c } = await started(t);
    const stopped = await c.type("stopped");
    expect(stopped).toMatchObject({ reason: "idle_timeout" });
    expect(stopped.stats).toBeDefined();
    expect((await c.closed).code).toBe(1000);
  });

  it("openpi: a connection with no observation for OPENPI_IDLE_TIMEOUT_MS is closed 1000 idle_timeout, its slot freed", async () => {
    const { key, customerId } = await newKey(t, { tier: "free" });
    const registry = streamRegistries.get(t.app.platform);
    const pi = new Client(`${t.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` });
    const meta = await pi.next(() => true);
    expect(meta).toMatchObject({ idle_timeout_ms: 2000 });
    expect(registry?.sessionsOf(customerId)).toBe(1);
    // Answering the heartbeat's pings (ws does on its own) does not keep it open.
    expect(await pi.closed).toEqual({ code: 1000, reason: "idle_timeout" });
    expect(pi.raw).toHaveLength(1); // the metadata only: no error text frame
    await until(() => registry?.sessionsOf(customerId) === 0);
    // The slot is really back: the tier's two sessions can be opened again.
    const again = [0, 1].map(() => new Client(`${t.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` }));
    for (const c of again) await c.next(() => true);
    for (const c of again) c.close();
  });

  it("openpi: a client that keeps sending observations stays connected past the idle timeout", async () => {
    const { key } = await newKey(t, { tier: "enterprise" });
    const pi = new Client(`${t.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` });
    await pi.next(() => true);
    const observation = packMsgpackNumpy({
      "observation/image": { data: new Uint8Array(64 * 64 * 3), shape: [64, 64, 3] },
      prompt: "pick up the fork",
    });
    // Observations for twice the idle timeout (2 s), one at a time as the stock client sends them.
    const end = Date.now() + 4_000;
    let replies = 1;
    while (Date.now() < end) {
      pi.ws.send(observation);
      replies++;
      await pi.next(() => pi.raw.length >= replies);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(pi.ws.readyState).toBe(WebSocket.OPEN);
    expect(pi.raw.every((r) => r.isBinary)).toBe(true);
    pi.close();
  });

  it("heartbeat: a client that answers pings stays; one that does not is dropped", async () => {
    const good = await connect(t, t.key);
    const mute = new WebSocket(`${t.baseUrl}/v1/stream`, { headers: { "x-api-key": t.key }, autoPong: false });
    const muteClosed = new Promise<number>((resolve) => mute.on("close", (code) => resolve(code)));
    mute.on("error", () => {});
    const code = await muteClosed;
    expect(code).toBe(1006);
    expect(good.ws.readyState).toBe(WebSocket.OPEN);
    good.close();
  });

  it("the metrics count sessions and frames by outcome", async () => {
    const { c } = await started(t);
    c.json({ type: "frame", seq: 1, image: img });
    await c.type("action");
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.body).toMatch(/vla_stream_sessions_active\{endpoint="stream"\} [1-9]/);
    expect(res.body).toMatch(/vla_stream_frames_total\{endpoint="stream",outcome="action"\} [1-9]/);
    expect(res.body).toMatch(/vla_stream_connections_rejected_total\{endpoint="stream",reason="auth"\} [1-9]/);
    c.close();
    await until(async () => {
      const r = await t.app.inject({ method: "GET", url: "/metrics" });
      return /vla_stream_sessions_active\{endpoint="stream"\} 0/.test(r.body);
    });
  });
});

describe("WS /v1/stream: graceful shutdown", () => {
  it("sessions get final stats (stopped, server_shutdown) and close 1001; openpi connections close 1001", async () => {
    const own = await buildStreamApp();
    try {
      const { c } = await started(own);
      c.json({ type: "frame", seq: 1, image: img });
      await c.type("action");
      const pi = new Client(`${own.baseUrl}/v1/openpi?unnorm_key=bridge_orig`, { authorization: `Api-Key ${own.key}` });
      await pi.next(() => true); // metadata
      const closing = own.app.close();
      const stopped = await c.type("stopped");
      expect(stopped).toMatchObject({ reason: "server_shutdown", stats: { frames_inferred: 1 } });
      expect((await c.closed).code).toBe(1001);
      expect((await pi.closed).code).toBe(1001);
      await closing;
    } finally {
      await own.close();
    }
  });
});
