import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { owner } from "../helpers/limits.ts";
import {
  buildStreamApp,
  Client,
  connect,
  flushLogs,
  jpeg,
  newKey,
  rawUpgrade,
  type StreamTestContext,
} from "./helpers.ts";

/** WS /v1/stream and the openpi upgrade with API keys bound to a robot (docs/api-keys.md). */
let t: StreamTestContext;
let img: Buffer;
beforeAll(async () => {
  t = await buildStreamApp();
  img = await jpeg(224, 224, 3);
});
afterAll(async () => {
  await t?.close();
});

type Json = Record<string, unknown>;

async function boundKey(defaults: Json) {
  const { customerId } = await newKey(t);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: owner(customerId),
    payload: { name: "bound", ...defaults },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { customerId, key: (res.json() as { key: string }).key };
}

async function history(key: string, source: string): Promise<Json[]> {
  await flushLogs(t.app);
  const res = await t.app.inject({
    method: "GET",
    url: `/v1/inference/history?source=${source}`,
    headers: { "x-api-key": key },
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { data: Json[] }).data;
}

describe("WS /v1/stream with a key bound to a robot", () => {
  it("a start without robot_id, model or unnorm_key takes the key's; frames are logged with its robot", async () => {
    const b = await boundKey({ robot_id: "arm-s", model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    const c = await connect(t, b.key);
    c.json({ type: "start", instruction: "stack" });
    const s = await c.type("started");
    expect(s).toMatchObject({
      robot_id: "arm-s",
      model: { id: "mock-openvla-7b", unnorm_key: "fractal20220817_data" },
    });
    c.json({ type: "frame", seq: 1, image: img.toString("base64") });
    await c.type("action");
    c.close();
    await c.closed;
    const rows = await history(b.key, "stream");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ robot_id: "arm-s", unnorm_key: "fractal20220817_data", status: "ok" });
  });

  it("a start naming another robot gets an error robot_mismatch and no session; the key's robot works", async () => {
    const b = await boundKey({ robot_id: "arm-s" });
    const c = await connect(t, b.key);
    c.json({ type: "start", robot_id: "arm-t", instruction: "stack" });
    expect(await c.type("error")).toMatchObject({ code: "robot_mismatch" });
    expect(c.of("started")).toHaveLength(0);
    c.json({ type: "start", robot_id: "arm-s", instruction: "stack", model: "demo-vla-tiny" });
    expect(await c.type("started")).toMatchObject({ robot_id: "arm-s", model: { id: "demo-vla-tiny" } });
    c.close();
    await c.closed;
  });

  it("a key without a robot still needs robot_id in start", async () => {
    const b = await boundKey({ model: "demo-vla-tiny" });
    const c = await connect(t, b.key);
    c.json({ type: "start", instruction: "stack" });
    const e = await c.type("error");
    expect(e).toMatchObject({ code: "validation_failed", errors: [{ path: "/robot_id" }] });
    c.close();
    await c.closed;
  });
});

describe("openpi with a key bound to a robot", () => {
  const pixels = new Uint8Array(224 * 224 * 3).map((_, i) => (i * 5) % 256);
  const observation = () =>
    packMsgpackNumpy({ "observation/image": { data: pixels, shape: [224, 224, 3] }, prompt: "stack" });

  async function roundTrip(key: string, path: string) {
    const c = new Client(`${t.baseUrl}${path}`, { authorization: `Api-Key ${key}` });
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    c.ws.send(observation());
    await c.next(() => c.raw.length >= 2);
    const meta = unpackMsgpackNumpy((c.raw[0] as { data: Buffer }).data) as Json;
    c.close();
    await c.closed;
    return meta;
  }

  it("a path-less client (/ and /v1/openpi without a query) gets the key's robot, model and unnorm_key", async () => {
    const b = await boundKey({ robot_id: "arm-o", model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    for (const path of ["/", "/v1/openpi"]) {
      const meta = await roundTrip(b.key, path);
      expect(meta).toMatchObject({
        model: "mock-openvla-7b",
        unnorm_key: "fractal20220817_data",
        unnorm_key_source: "api_key",
      });
    }
    const rows = await history(b.key, "openpi");
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(r).toMatchObject({ robot_id: "arm-o", unnorm_key: "fractal20220817_data" });
    // The query still overrides model and unnorm_key, and may name the key's robot.
    const named = await roundTrip(b.key, "/v1/openpi?robot_id=arm-o&unnorm_key=bridge_orig");
    expect(named).toMatchObject({ unnorm_key: "bridge_orig", unnorm_key_source: "query" });
  });

  it("a query naming another robot is refused on the upgrade: HTTP 403 robot_mismatch", async () => {
    const b = await boundKey({ robot_id: "arm-o" });
    for (const path of ["/v1/openpi?robot_id=arm-p", "/?robot_id=arm-p"]) {
      const c = rawUpgrade(t.baseUrl, path, { authorization: `Api-Key ${b.key}` });
      const head = await c.head;
      const body = await head.body;
      c.socket.destroy();
      expect(head.status).toBe(403);
      expect(JSON.parse(body)).toMatchObject({ code: "robot_mismatch", robot_id: "arm-p", key_robot_id: "arm-o" });
    }
    expect(await history(b.key, "openpi")).toHaveLength(0);
  });
});
