import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import type { NdArray } from "../../src/modules/inference/ndarray.ts";
import {
  buildStreamApp,
  Client,
  eventually,
  rawUpgrade,
  type StreamTestContext,
  serverConnections,
} from "./helpers.ts";

/** openpi clients on the embedded model registry (no MODELS_CONFIG), as a fresh install serves them. */
let t: StreamTestContext;
beforeAll(async () => {
  t = await buildStreamApp();
});
afterAll(async () => {
  await t?.close();
});

const pixels = new Uint8Array(224 * 224 * 3).map((_, i) => (i * 7) % 256);
const observation = () =>
  packMsgpackNumpy({ "observation/image": { data: pixels, shape: [224, 224, 3] }, prompt: "stack" });
const auth = () => ({ authorization: `Api-Key ${t.key}` });

/** Connects, returns the metadata and the reply to one observation. */
async function roundTrip(path: string) {
  const c = new Client(`${t.baseUrl}${path}`, auth());
  await c.opened();
  await c.next(() => c.raw.length >= 1);
  c.ws.send(observation());
  await c.next(() => c.raw.length >= 2);
  const [meta, reply] = c.raw.map((r) => unpackMsgpackNumpy(r.data) as Record<string, unknown>);
  c.close();
  await c.closed;
  return { meta: meta as Record<string, unknown>, reply: reply as Record<string, unknown> };
}

describe("openpi on the embedded defaults", () => {
  it("the bare URI /v1/openpi works: the default model's default unnorm_key, named in the metadata", async () => {
    const { meta, reply } = await roundTrip("/v1/openpi");
    expect(meta).toMatchObject({
      model: "mock-openvla-7b",
      unnorm_key: "bridge_orig",
      unnorm_key_source: "model_default",
      unnorm_keys: ["bridge_orig", "fractal20220817_data"],
    });
    expect((reply.actions as NdArray).shape).toEqual([1, 7]);
    const named = await roundTrip("/v1/openpi?unnorm_key=fractal20220817_data");
    expect(named.meta).toMatchObject({ unnorm_key: "fractal20220817_data", unnorm_key_source: "query" });
  });

  it("the root path accepts the openpi upgrade (clients built with host + port), with the same answers", async () => {
    const root = await roundTrip("/");
    const v1 = await roundTrip("/v1/openpi");
    expect(root.meta).toEqual(v1.meta);
    expect([...(root.reply.actions as NdArray).data]).toEqual([...(v1.reply.actions as NdArray).data]);
    const q = await roundTrip("/?model=demo-vla-tiny&robot_id=arm-root");
    expect(q.meta).toMatchObject({ model: "demo-vla-tiny", backend: "onnx" });
  });

  it("refusals at the root are the same HTTP answers as at /v1/openpi", async () => {
    const cases: [string, Record<string, string>, number, string][] = [
      ["/", {}, 401, "unauthorized"],
      ["/?model=nope", auth(), 404, "unknown_model"],
      ["/?unnorm_key=kuka", auth(), 400, "invalid_unnorm_key"],
      ["/?colour=blue", auth(), 400, "invalid_request"],
      ["/?robot_id=arm%00", auth(), 400, "invalid_character"],
    ];
    for (const [path, headers, status, code] of cases) {
      const c = rawUpgrade(t.baseUrl, path, headers);
      const head = await c.head;
      const problem = JSON.parse(await head.body) as { code: string; errors?: unknown[] };
      c.socket.destroy();
      expect({ path, status: head.status, code: problem.code }).toEqual({ path, status, code });
      if (code === "invalid_request") {
        const v1 = rawUpgrade(t.baseUrl, "/v1/openpi?colour=blue", headers);
        const same = JSON.parse(await (await v1.head).body) as { errors?: unknown[] };
        v1.socket.destroy();
        expect(problem.errors).toEqual(same.errors);
      }
    }
  });

  it("a plain GET / keeps its answer, 404 route_not_found (any query); GET /healthz answers OK like openpi", async () => {
    for (const url of ["/", "/?colour=blue", "/?model=mock-openvla-7b"]) {
      const res = await t.app.inject({ method: "GET", url });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe("route_not_found");
    }
    const health = await t.app.inject({ method: "GET", url: "/healthz" });
    expect(health.statusCode).toBe(200);
    expect(health.headers["content-type"]).toMatch(/^text\/plain/);
    expect(health.body).toBe("OK\n");
  });

  it("a session at the root that the client drops leaves no server socket", async () => {
    const c = new Client(`${t.baseUrl}/`, auth());
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    c.ws.terminate();
    expect(await eventually(async () => (await serverConnections(t.app)) === 0)).toBe(true);
  });
});
