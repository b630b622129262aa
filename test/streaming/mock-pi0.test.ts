import { createHash } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import type { NdArray } from "../../src/modules/inference/ndarray.ts";
import { unnormalize } from "../../src/modules/models/action-codec.ts";
import { MockBackend } from "../../src/modules/models/backends/mock.ts";
import { loadDatasetStatistics } from "../../src/modules/models/dataset-statistics.ts";
import { PROJECT_ROOT } from "../../src/modules/models/registry.ts";
import { buildStreamApp, Client, jpeg, type StreamTestContext, started } from "./helpers.ts";

/**
 * The embedded pi0-like mock (`mock-pi0`) on a fresh install (no MODELS_CONFIG): the chunk
 * paths of REST, openpi and the native stream on the defaults.
 */
const H = 10;
const D = 7;
const KEY = "synthetic_delta_ee";
const stats = loadDatasetStatistics(path.join(PROJECT_ROOT, "models/mock-pi0/dataset_statistics.json"));
const action = stats.entries.get(KEY)?.action;
if (action === undefined) throw new Error(`no ${KEY} statistics`);
const EPS = 1e-6;

/** What the mock answers for (image bytes, prompt), in robot units. */
const expectedChunk = (imageBytes: Buffer, prompt: string) =>
  MockBackend.trajectory(
    { modelId: "mock-pi0", prompt, imageSha256: createHash("sha256").update(imageBytes).digest("hex") },
    H,
    D,
  ).map((row) => unnormalize(row, action, { mode: "bounds_q99", epsilon: EPS }));

/** Every value inside the statistics' [q01, q99] (+ openpi's eps), the gripper in RLDS's [0, 1]. */
function expectInRange(chunk: readonly (readonly number[])[], tol = 0) {
  expect(chunk).toHaveLength(H);
  for (const row of chunk) {
    expect(row).toHaveLength(D);
    row.forEach((x, d) => {
      expect(x).toBeGreaterThanOrEqual((action?.q01[d] as number) - tol);
      expect(x).toBeLessThanOrEqual((action?.q99[d] as number) + EPS + tol);
    });
    expect(row[D - 1]).toBeGreaterThanOrEqual(0);
    expect(row[D - 1]).toBeLessThanOrEqual(1);
  }
}

let t: StreamTestContext;
let img1: Buffer;
let img2: Buffer;
beforeAll(async () => {
  t = await buildStreamApp();
  img1 = await jpeg(224, 224, 1);
  img2 = await jpeg(224, 224, 2);
});
afterAll(async () => {
  await t?.close();
});

const infer = (image: Buffer, instruction: string, robotId = "arm-pi0") =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": t.key },
    payload: { image: image.toString("base64"), instruction, robot_id: robotId, model: "mock-pi0" },
  });

describe("mock-pi0 over REST", () => {
  it("POST /v1/inference answers a 10 x 7 action_chunk, backend mock, the default unnorm key", async () => {
    const res = await infer(img1, "Stack the cups");
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as {
      model: string;
      backend: string;
      unnorm_key: string;
      action: number[];
      action_chunk: number[][];
      safety: { status: string; raw_action: number[][] };
    };
    expect(body).toMatchObject({ model: "mock-pi0", backend: "mock", unnorm_key: KEY });
    expect(body.action_chunk).toHaveLength(H);
    expect(body.action).toEqual(body.action_chunk[0]);
    // The mock's trajectory through openpi's quantile un-normalization, prompt as given (no lower-casing).
    expect(body.safety.raw_action).toEqual(expectedChunk(img1, "Stack the cups"));
    expectInRange(body.action_chunk);
    // Inside the default safety profile: nothing to clamp.
    expect(body.safety.status).toBe("pass");
    expect(body.action_chunk).toEqual(body.safety.raw_action);
  });

  it("is deterministic in (image, prompt) and differs when either changes", async () => {
    const chunk = async (image: Buffer, instruction: string) =>
      ((await infer(image, instruction, "arm-det")).json() as { safety: { raw_action: number[][] } }).safety.raw_action;
    const a = await chunk(img1, "open the drawer");
    expect(await chunk(img1, "open the drawer")).toEqual(a);
    expect(await chunk(img1, "close the drawer")).not.toEqual(a);
    expect(await chunk(img2, "open the drawer")).not.toEqual(a);
  });

  it("chunks are smooth in robot units and the gripper stays in [0, 1] over many prompts", async () => {
    for (let i = 0; i < 20; i++) {
      const res = await infer(img2, `task ${i}`, `arm-smooth-${i}`);
      const chunk = (res.json() as { action_chunk: number[][] }).action_chunk;
      expectInRange(chunk);
      for (let d = 0; d < D - 1; d++) {
        const range = (action.q99[d] as number) - (action.q01[d] as number);
        for (let k = 0; k + 1 < H; k++) {
          // At most 0.3 normalized units (0.15 of the q01..q99 range) per step.
          expect(Math.abs((chunk[k + 1]?.[d] as number) - (chunk[k]?.[d] as number))).toBeLessThanOrEqual(0.15 * range);
        }
      }
    }
  });
});

describe("mock-pi0 over openpi", () => {
  it("WS /v1/openpi?model=mock-pi0: metadata says action_horizon 10; actions are (10, 7) float32, deterministic", async () => {
    const c = new Client(`${t.baseUrl}/v1/openpi?model=mock-pi0&robot_id=arm-openpi`, {
      authorization: `Api-Key ${t.key}`,
    });
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    const pixels = new Uint8Array(224 * 224 * 3).map((_, i) => (i * 13) % 256);
    const observation = packMsgpackNumpy({
      "observation/image": { data: pixels, shape: [224, 224, 3] },
      prompt: "stack the cups",
    });
    c.ws.send(observation);
    await c.next(() => c.raw.length >= 2);
    c.ws.send(observation);
    await c.next(() => c.raw.length >= 3);
    const [meta, r1, r2] = c.raw.map((r) => unpackMsgpackNumpy(r.data) as { actions?: NdArray });
    c.close();
    await c.closed;
    expect(meta).toMatchObject({
      model: "mock-pi0",
      backend: "mock",
      action_dim: D,
      action_horizon: H,
      unnorm_key: KEY,
      unnorm_key_source: "model_default",
      unnorm_keys: [KEY],
    });
    const actions = r1?.actions;
    if (actions === undefined) throw new Error("no actions");
    expect(actions.shape).toEqual([H, D]);
    expect(actions.dtype).toBe("<f4");
    expect(actions.data).toBeInstanceOf(Float32Array);
    const values = [...actions.data] as number[];
    expect([...(r2?.actions?.data ?? [])]).toEqual(values);
    expectInRange(
      Array.from({ length: H }, (_, k) => values.slice(k * D, (k + 1) * D)),
      1e-7, // float32 rounding
    );
  });
});

describe("mock-pi0 over the native stream", () => {
  it("started names the chunk model; action_chunk is blended per timestep across frames (weighted)", async () => {
    const { c, s } = await started(t, {
      model: "mock-pi0",
      unnorm_key: undefined,
      chunk_aggregation: "weighted",
      robot_id: "arm-stream",
    });
    expect(s.model).toMatchObject({ id: "mock-pi0", backend: "mock", action: { dim: D, chunk: H }, unnorm_key: KEY });
    const raw = (m: Record<string, unknown>) => (m.safety as { raw_action: number[][] }).raw_action;
    c.json({ type: "frame", seq: 1, image: img1.toString("base64") });
    const a1 = await c.type("action", (m) => m.seq === 1);
    expect(a1.action_chunk).toHaveLength(H);
    expect((a1.action_chunk as number[][])[0]).toEqual(a1.action);
    const w1 = raw(a1);
    // The first chunk is the mock's own, for the session's instruction.
    expect(w1).toEqual(expectedChunk(img1, "pick up the red block"));
    c.json({ type: "frame", seq: 2, image: img2.toString("base64") });
    const w2 = raw(await c.type("action", (m) => m.seq === 2));

    const fresh = await started(t, {
      model: "mock-pi0",
      unnorm_key: undefined,
      chunk_aggregation: "latest",
      robot_id: "arm-stream-fresh",
    });
    fresh.c.json({ type: "frame", seq: 2, image: img2.toString("base64") });
    const f2 = raw(await fresh.c.type("action", (m) => m.seq === 2));
    expect(f2).toEqual(expectedChunk(img2, "pick up the red block"));
    // Frame 2 overlaps frame 1's steps 1..9: 0.3 old + 0.7 new; its last step is new.
    for (let k = 0; k < H - 1; k++) {
      for (let d = 0; d < D; d++) {
        expect(w2[k]?.[d]).toBeCloseTo(0.3 * (w1[k + 1]?.[d] as number) + 0.7 * (f2[k]?.[d] as number), 12);
      }
    }
    expect(w2[H - 1]).toEqual(f2[H - 1]);
    expectInRange(w2);
    c.close();
    fresh.c.close();
  });
});
