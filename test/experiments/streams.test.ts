import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { owner } from "../helpers/limits.ts";
import { buildStreamApp, Client, flushLogs, jpeg, newKey, type StreamTestContext } from "../streaming/helpers.ts";
import { createExperiment } from "./helpers.ts";

let t: StreamTestContext;
let img: Buffer;
beforeAll(async () => {
  t = await buildStreamApp();
  img = await jpeg(224, 224, 3);
});
afterAll(async () => {
  await t?.close();
});

/** One variant only: every session of the customer lands on it. */
const ONLY = [
  { name: "only-tiny", model: "demo-vla-tiny", weight: 1 },
  { name: "never", model: "mock-openvla-7b", weight: 1e-9 },
];

describe("experiments on streams", () => {
  it("a stream session without a model is assigned at start; `started` and every frame's log row name the variant", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, { name: "s", variants: ONLY })).json();
    const ws = new Client(`${t.baseUrl}/v1/stream`, { "x-api-key": c.key });
    await ws.opened();
    ws.json({ type: "start", robot_id: "arm-1", instruction: "pick", unnorm_key: "bridge_orig" });
    const s = await ws.type("started");
    expect(s.experiment).toEqual({ id: e.id, variant: "only-tiny" });
    expect((s.model as { id: string }).id).toBe("demo-vla-tiny");
    ws.json({ type: "frame", seq: 1, image: img.toString("base64") });
    await ws.type("action");
    ws.close();
    await flushLogs(t.app);
    const hist = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history?source=stream",
      headers: owner(c.customerId),
    });
    expect(hist.json().data[0]).toMatchObject({
      model: "demo-vla-tiny",
      experiment: { id: e.id, variant: "only-tiny" },
    });
  });

  it("openpi: the metadata map names the variant; the frames are logged with it", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, { name: "o", variants: ONLY })).json();
    const ws = new Client(`${t.baseUrl}/v1/openpi?robot_id=arm-2&unnorm_key=bridge_orig`, {
      authorization: `Api-Key ${c.key}`,
    });
    await ws.opened();
    await ws.next(() => ws.raw.length >= 1);
    const meta = unpackMsgpackNumpy((ws.raw[0] as { data: Buffer }).data) as Record<string, unknown>;
    expect(meta).toMatchObject({ model: "demo-vla-tiny", experiment: { id: e.id, variant: "only-tiny" } });
    const pixels = new Uint8Array(224 * 224 * 3).fill(90);
    ws.ws.send(packMsgpackNumpy({ "observation/image": { data: pixels, shape: [224, 224, 3] }, prompt: "pick" }));
    await ws.next(() => ws.raw.length >= 2);
    ws.close();
    await flushLogs(t.app);
    const hist = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history?source=openpi",
      headers: owner(c.customerId),
    });
    expect(hist.json().data[0]).toMatchObject({
      model: "demo-vla-tiny",
      experiment: { id: e.id, variant: "only-tiny" },
    });
  });

  it("a variant whose model a reload removed is skipped at session start: default model, untagged, not unknown_model", async () => {
    const c = await newKey(t);
    await createExperiment(t.app, c.customerId, { name: "gone", variants: ONLY });
    const engine = t.app.platform.engine;
    const models = EMBEDDED_REGISTRY.models.filter((m) => m.id !== "demo-vla-tiny");
    await engine.reload(parseRegistry({ ...EMBEDDED_REGISTRY, models }, PROJECT_ROOT));
    try {
      const ws = new Client(`${t.baseUrl}/v1/stream`, { "x-api-key": c.key });
      await ws.opened();
      ws.json({ type: "start", robot_id: "arm-1", instruction: "pick", unnorm_key: "bridge_orig" });
      const s = await ws.type("started");
      expect(s.experiment).toBeUndefined();
      expect((s.model as { id: string }).id).toBe("mock-openvla-7b");
      ws.close();
      const o = new Client(`${t.baseUrl}/v1/openpi?robot_id=arm-2&unnorm_key=bridge_orig`, {
        authorization: `Api-Key ${c.key}`,
      });
      await o.opened();
      await o.next(() => o.raw.length >= 1);
      const meta = unpackMsgpackNumpy((o.raw[0] as { data: Buffer }).data) as Record<string, unknown>;
      expect(meta.model).toBe("mock-openvla-7b");
      expect(meta.experiment).toBeUndefined();
      o.close();
    } finally {
      await engine.reload(parseRegistry(EMBEDDED_REGISTRY, PROJECT_ROOT));
    }
  });
});
