import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { customerModelExample } from "../../src/modules/models/models.schemas.ts";
import { inferenceLogs } from "../../src/platform/db/schema/index.ts";
import type { Resolver } from "../../src/platform/egress.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";
import { flushLogs, jpeg } from "../inference/helpers.ts";
import { type OpenvlaFake, startOpenvlaFake } from "./openvla-fake.ts";

/**
 * POST /v1/models/{id}/probe: one synthetic frame through a customer's own endpoint. The only
 * sockets go to the loopback fake OpenVLA server below (127.0.0.0/8 allow-listed, http allowed);
 * no name is ever resolved.
 */

type Mode = "ok" | "fail" | "nan";
let mode: Mode = "ok";
let fake: OpenvlaFake;
/** What the fake received: instruction, unnorm_key, and the frame's shape and first pixel. */
const seen = () =>
  fake.calls.map((c) => {
    const image = decodeJsonNumpy(c.doc.image);
    return {
      instruction: c.doc.instruction,
      ...(c.doc.unnorm_key === undefined ? {} : { unnorm_key: c.doc.unnorm_key }),
      shape: [...image.shape],
      pixel: Number(image.data[0]),
    };
  });

const noDns: Resolver = async (host) => {
  throw Object.assign(new Error(`unexpected lookup of ${host}`), { code: "ENOTFOUND" });
};

let t: LimitsContext;
const A = { id: "", admin: "", robot: "" };
const B = { id: "", admin: "" };

beforeAll(async () => {
  fake = await startOpenvlaFake(undefined, () =>
    mode === "fail"
      ? { status: 500, body: "GPU fell over" }
      : mode === "nan"
        ? [0, 0, 0, 0, 0, Number.NaN, 1]
        : [0.01, -0.02, 0.03, 0, 0, 0, 1],
  );
  t = await buildLimitsApp({
    env: { MODELS_WARM_UP: "false", BYOM_ALLOW_HTTP: "true", BYOM_ALLOWED_NETWORKS: "127.0.0.0/8" },
    egressResolver: noDns,
  });
  for (const c of [A, B]) {
    c.id = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
    c.admin = (await seedKey(t.database, c.id, { scopes: ["inference", "admin"] })).key;
  }
  A.robot = (await seedKey(t.database, A.id, { scopes: ["inference"] })).key;
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/models",
    headers: { "x-api-key": A.admin },
    payload: {
      ...customerModelExample,
      id: "kitting",
      backend: { kind: "openvla-http", endpoints: [fake.url], retries: 0 },
    },
  });
  if (res.statusCode !== 201) throw new Error(`registration failed: ${res.statusCode} ${res.body}`);
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

const probe = (key: string, id: string, payload?: object) =>
  t.app.inject({
    method: "POST",
    url: `/v1/models/${id}/probe`,
    headers: { "x-api-key": key },
    ...(payload === undefined ? {} : { payload }),
  });

describe("POST /v1/models/{id}/probe", () => {
  it("sends a mid-grey frame of the model's input size and reports the action; no body needed", async () => {
    mode = "ok";
    const before = fake.calls.length;
    const res = await probe(A.admin, "kitting");
    expect(res.statusCode, res.body).toBe(200);
    const r = res.json();
    expect(r).toMatchObject({ ok: true, unnorm_key: "kitting_v2", action_chunk: null });
    expect(r.action).toHaveLength(7);
    expect(r.action[6]).toBe(1);
    expect(r.latency_ms).toBeGreaterThan(0);
    expect(r.timing.model_ms).toBeGreaterThanOrEqual(0);
    const info = (
      await t.app.inject({ method: "GET", url: "/v1/models/kitting", headers: { "x-api-key": A.admin } })
    ).json();
    const { width, height } = info.input.image;
    expect(seen().slice(before)).toEqual([
      { instruction: "pick up the block", unnorm_key: "kitting_v2", shape: [height, width, 3], pixel: 128 },
    ]);
    // Not a robot's inference: no history row.
    await flushLogs(t.app);
    const rows = await t.database.db.select().from(inferenceLogs).where(eq(inferenceLogs.customerId, A.id));
    expect(rows).toHaveLength(0);
  });

  it("takes the instruction and unnorm_key; an unknown unnorm_key is 400 before anything is sent", async () => {
    mode = "ok";
    const before = fake.calls.length;
    const res = await probe(A.admin, "kitting", { instruction: "put the bolt in the tray", unnorm_key: "kitting_v2" });
    expect(res.statusCode, res.body).toBe(200);
    expect(
      seen()
        .slice(before)
        .map((s) => s.instruction),
    ).toEqual(["put the bolt in the tray"]);
    const bad = await probe(A.admin, "kitting", { unnorm_key: "fractal" });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json()).toMatchObject({ code: "invalid_unnorm_key", valid_unnorm_keys: ["kitting_v2"] });
    const invalid = await probe(A.admin, "kitting", { instruction: "", extra: 1 });
    expect(invalid.statusCode).toBe(422);
    expect(invalid.json().code).toBe("validation_failed");
    expect(fake.calls.length).toBe(before + 1);
  });

  it("an endpoint failure or an invalid answer is ok: false with the code a request would get", async () => {
    mode = "fail";
    const failed = await probe(A.admin, "kitting");
    expect(failed.statusCode, failed.body).toBe(200);
    expect(failed.json()).toMatchObject({ ok: false, error: { status: expect.any(Number) } });
    expect(failed.json().error.status).toBeGreaterThanOrEqual(500);
    const robot = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": A.robot },
      payload: {
        image: (await jpeg(32, 32, 1)).toString("base64"),
        instruction: "pick",
        model: "kitting",
        robot_id: "cell-1",
      },
    });
    expect(robot.json().code, robot.body).toBe(failed.json().error.code);

    mode = "nan";
    const nan = await probe(A.admin, "kitting");
    expect(nan.statusCode, nan.body).toBe(200);
    expect(nan.json()).toMatchObject({ ok: false, error: { code: "invalid_model_output", status: 502 } });
    mode = "ok";
  });

  it("only the caller's own models: another account's id, a service model and an unknown id are 404", async () => {
    const before = fake.calls.length;
    for (const [key, id] of [
      [B.admin, "kitting"],
      [A.admin, "mock-openvla-7b"],
      [A.admin, "nope"],
    ] as const) {
      const res = await probe(key, id);
      expect(res.statusCode, `${id}: ${res.body}`).toBe(404);
      expect(res.json().code).toBe("unknown_model");
    }
    expect(fake.calls.length).toBe(before);
  });

  it("needs the admin scope (403 before the body is read) and counts against the rate limit", async () => {
    const res = await probe(A.robot, "kitting", { instruction: "" });
    expect(res.statusCode).toBe(403);
    const ok = await probe(A.admin, "kitting");
    expect(ok.headers.ratelimit).toBeDefined();
  });
});
