import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customerModelExample } from "../../src/modules/models/models.schemas.ts";
import { PROJECT_ROOT } from "../../src/modules/models/registry.ts";
import { safetyServices } from "../../src/modules/safety/safety.module.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";
import { jpeg, pattern } from "../inference/helpers.ts";
import { type OpenvlaFake, startOpenvlaFake } from "./openvla-fake.ts";

/**
 * A customer's own model (docs/models.md, "Bring your own endpoint") as an API key's default model
 * and in the safety-profile view. The only sockets opened go to the loopback fake OpenVLA server.
 * The registry also has a model "arm" restricted to a third customer, with statistics of its own
 * for the same unnorm key: customer A's own "arm" must never be judged by them.
 */

function modelsConfig(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vla-byom-keys-"));
  const stats = path.join(dir, "arm-stats.json");
  const action = {
    mean: [0, 0, 0, 0, 0, 0, 0.5],
    std: [0.01, 0.01, 0.01, 0.03, 0.03, 0.03, 0.2],
    min: [-0.05, -0.05, -0.05, -0.2, -0.2, -0.2, 0.2],
    max: [0.05, 0.05, 0.05, 0.2, 0.2, 0.2, 0.8],
    q01: [-0.03, -0.03, -0.03, -0.1, -0.1, -0.1, 0.2],
    q99: [0.03, 0.03, 0.03, 0.1, 0.1, 0.1, 0.8],
    mask: [true, true, true, true, true, true, false],
  };
  writeFileSync(stats, JSON.stringify({ kitting_v2: { action } }));
  const file = path.join(dir, "models.json");
  const mock = (id: string, statistics: string, key: string, extra: Record<string, unknown> = {}) => ({
    id,
    backend: { kind: "mock" },
    action: { dim: 7, chunk: 1 },
    dataset_statistics: statistics,
    default_unnorm_key: key,
    ...extra,
  });
  writeFileSync(
    file,
    JSON.stringify({
      default_model: "public",
      models: [
        mock("public", path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json"), "bridge_orig"),
        mock("arm", stats, "kitting_v2", { access: { customers: [randomUUID()] } }),
      ],
    }),
  );
  return file;
}

let fake: OpenvlaFake;
let fakeUrl: string;
let t: LimitsContext;
let img: string;
/** Enterprise customers A and B, each with an admin key. */
const A = { id: "", admin: "" };
const B = { id: "", admin: "" };

beforeAll(async () => {
  fake = await startOpenvlaFake();
  fakeUrl = fake.url;
  t = await buildLimitsApp({
    env: {
      MODELS_CONFIG: modelsConfig(),
      MODELS_WARM_UP: "false",
      BYOM_ALLOW_HTTP: "true",
      BYOM_ALLOWED_NETWORKS: "127.0.0.0/8",
    },
    egressResolver: async () => {
      throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    },
  });
  for (const c of [A, B]) {
    c.id = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
    c.admin = (await seedKey(t.database, c.id, { scopes: ["inference", "admin"] })).key;
  }
  img = (await jpeg(64, 48, 3)).toString("base64");
  const res = await register(A.admin, "arm");
  expect(res.statusCode, res.body).toBe(201);
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

type Json = Record<string, unknown>;
const register = (key: string, id: string) =>
  t.app.inject({
    method: "POST",
    url: "/v1/models",
    headers: { "x-api-key": key },
    payload: { ...customerModelExample, id, backend: { kind: "openvla-http", endpoints: [fakeUrl], retries: 0 } },
  });
const createKey = (admin: string, payload: Json) =>
  t.app.inject({ method: "POST", url: "/v1/api-keys", headers: { "x-api-key": admin }, payload });
const infer = (key: string) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "put the bolt in the tray", robot_id: "cell-1" },
  });
const act = (key: string) =>
  t.app.inject({
    method: "POST",
    url: "/act",
    headers: { "content-type": "application/json", "x-api-key": key },
    payload: JSON.stringify({
      image: { __numpy__: pattern(224, 224, 1).toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
      instruction: "put the bolt in the tray",
    }),
  });
/** The float64 [7] json_numpy answer of /act. */
const decodeF8 = (doc: { __numpy__: string }) => {
  const bytes = Buffer.from(doc.__numpy__, "base64");
  return Array.from({ length: bytes.length / 8 }, (_, i) => bytes.readDoubleLE(i * 8));
};
const profileView = (key: string, query: string) =>
  t.app.inject({ method: "GET", url: `/v1/robots/cell-1/safety-profile?${query}`, headers: { "x-api-key": key } });
/** A problem body without what differs between two requests (its request id and instance). */
const problem = (body: string) => {
  const { request_id: _r, instance: _i, ...rest } = JSON.parse(body) as Json;
  return rest;
};

describe("an API key's default model may be its customer's own model", () => {
  it("a key created with it serves /v1/inference and /act without naming a model", async () => {
    const created = await createKey(A.admin, { name: "arm key", model: "arm", unnorm_key: "kitting_v2" });
    expect(created.statusCode, created.body).toBe(201);
    const key = (created.json() as { key: string }).key;
    const out = await infer(key);
    expect(out.statusCode, out.body).toBe(200);
    expect(out.json()).toMatchObject({
      model: "arm",
      unnorm_key: "kitting_v2",
      action: [0.01, -0.02, 0.03, 0, 0, 0, 1],
    });
    const viaAct = await act(key);
    expect(viaAct.statusCode, viaAct.body).toBe(200);
    // The customer's endpoint answered (the service's mock models answer other actions).
    expect(decodeF8(viaAct.json())).toEqual([0.01, -0.02, 0.03, 0, 0, 0, 1]);
  });

  it("PATCH may set it too, and its unnorm_key is checked against the customer's model", async () => {
    const k = (await createKey(A.admin, { name: "later" })).json() as { id: string };
    const set = await t.app.inject({
      method: "PATCH",
      url: `/v1/api-keys/${k.id}`,
      headers: { "x-api-key": A.admin },
      payload: { model: "arm" },
    });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({ model: "arm" });
    const bad = await createKey(A.admin, { name: "bad", model: "arm", unnorm_key: "bridge_orig" });
    expect(bad.statusCode, bad.body).toBe(422);
    expect(bad.json()).toMatchObject({ code: "validation_failed", errors: [{ path: "/unnorm_key" }] });
  });

  it("another customer naming it gets the 422 of an unknown id, which does not reveal it", async () => {
    const other = await createKey(B.admin, { name: "stolen", model: "arm" });
    const unknown = await createKey(B.admin, { name: "typo", model: "no-such-model" });
    expect(other.statusCode, other.body).toBe(422);
    expect(other.json()).toMatchObject({ code: "validation_failed", errors: [{ path: "/model" }] });
    expect(problem(other.body)).toEqual(problem(unknown.body));
    expect(other.body).not.toContain("arm");
  });

  it("once the customer deletes the model, the key gets 404 unknown_model, like a registry model removed by a reload", async () => {
    expect((await register(A.admin, "short-lived")).statusCode).toBe(201);
    const created = await createKey(A.admin, { name: "short", model: "short-lived" });
    expect(created.statusCode, created.body).toBe(201);
    const key = (created.json() as { key: string }).key;
    expect((await infer(key)).statusCode).toBe(200);
    const del = await t.app.inject({
      method: "DELETE",
      url: "/v1/models/short-lived",
      headers: { "x-api-key": A.admin },
    });
    expect(del.statusCode, del.body).toBe(204);
    const gone = await infer(key);
    expect(gone.statusCode, gone.body).toBe(404);
    expect(gone.json()).toMatchObject({ code: "unknown_model" });
    expect((await act(key)).statusCode).toBe(404);
    // The key keeps its default until it is changed, as for a removed registry model.
    const keys = (
      await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: { "x-api-key": A.admin } })
    ).json() as { data: Json[] };
    expect(keys.data.find((k) => k.id === (created.json() as Json).id)).toMatchObject({ model: "short-lived" });
  });
});

describe("GET /v1/robots/{robot_id}/safety-profile?model= for a customer's own model", () => {
  it("200 with the profile the gate applies (judged under customer:<id>)", async () => {
    const res = await profileView(A.admin, "model=arm");
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as Json;
    expect(body.applies_to).toEqual({ model: "arm", unnorm_key: "kitting_v2" });
    const safety = safetyServices.get(t.app.platform);
    if (safety === undefined) throw new Error("no safety service");
    expect(body.profile).toEqual(await safety.profileFor(A.id, "cell-1", "kitting_v2", "customer:arm"));
    // Not the statistics of the service's "arm" (restricted to another customer): gripper [0.2, 0.8].
    expect((body.profile as { gripper: number[] }).gripper).toEqual([0, 1]);
    expect((await safety.profileFor(A.id, "cell-1", "kitting_v2", "arm")).gripper).toEqual([0.2, 0.8]);
    const named = await profileView(A.admin, "model=arm&unnorm_key=kitting_v2");
    expect(named.statusCode, named.body).toBe(200);
    expect(named.json()).toMatchObject({ applies_to: { model: "arm", unnorm_key: "kitting_v2" } });
  });

  it("only unnorm_key: the customer's own model that has it is found", async () => {
    const res = await profileView(A.admin, "unnorm_key=kitting_v2");
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ applies_to: { model: "arm", unnorm_key: "kitting_v2" } });
  });

  it("another customer's model is 404 unknown_model, as an id that does not exist", async () => {
    const res = await profileView(B.admin, "model=arm");
    const unknown = await profileView(B.admin, "model=no-such-model");
    expect(res.statusCode, res.body).toBe(404);
    expect(res.json()).toMatchObject({ code: "unknown_model" });
    expect(unknown.statusCode).toBe(404);
    expect((res.json() as Json).available_models).toEqual((unknown.json() as Json).available_models);
    // GET /v1/models/{id} too, its problem body (declared per media type in the route) intact.
    const described = await t.app.inject({ method: "GET", url: "/v1/models/arm", headers: { "x-api-key": B.admin } });
    expect(described.statusCode).toBe(404);
    expect(described.headers["content-type"]).toContain("application/problem+json");
    expect(described.json()).toMatchObject({ code: "unknown_model", available_models: expect.any(Array) });
    expect((described.json() as Json).available_models).not.toContain("arm");
  });
});
