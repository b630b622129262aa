import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { owner, seedCustomer } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext } from "../inference/helpers.ts";

/** Keys bound to a robot: the defaults as the key-management routes accept, check and show them. */
let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildInferenceApp();
});
afterAll(async () => {
  await t?.close();
});

type Json = Record<string, unknown>;
const create = (c: string, payload: Json) =>
  t.app.inject({ method: "POST", url: "/v1/api-keys", headers: owner(c), payload });
const patch = (c: string, id: string, payload: Json) =>
  t.app.inject({ method: "PATCH", url: `/v1/api-keys/${id}`, headers: owner(c), payload });
const list = async (c: string) => {
  const res = await t.app.inject({ method: "GET", url: "/v1/api-keys", headers: owner(c) });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { data: Json[] }).data;
};

function failed(res: { statusCode: number; body: string; json: () => unknown }, pointer: string): Json {
  expect(res.statusCode, res.body).toBe(422);
  const p = res.json() as { code: string; errors: { path: string }[] };
  expect(p.code).toBe("validation_failed");
  expect(p.errors.map((e) => e.path)).toContain(pointer);
  return p as unknown as Json;
}

describe("API key defaults (robot_id, model, unnorm_key)", () => {
  it("are set at creation, shown on create and in the list, null when not set", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const res = await create(c, {
      name: "arm-3",
      robot_id: "arm-3",
      model: "mock-openvla-7b",
      unnorm_key: "fractal20220817_data",
    });
    expect(res.statusCode, res.body).toBe(201);
    const bound = res.json() as Json;
    expect(bound).toMatchObject({ robot_id: "arm-3", model: "mock-openvla-7b", unnorm_key: "fractal20220817_data" });
    const plain = (await create(c, { name: "plain" })).json() as Json;
    expect(plain).toMatchObject({ robot_id: null, model: null, unnorm_key: null });
    const rows = await list(c);
    expect(rows.find((k) => k.id === bound.id)).toMatchObject({
      robot_id: "arm-3",
      model: "mock-openvla-7b",
      unnorm_key: "fractal20220817_data",
    });
    expect(rows.find((k) => k.id === plain.id)).toMatchObject({ robot_id: null, model: null, unnorm_key: null });
  });

  it("PATCH sets and clears them (null clears); other fields are left alone", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const k = (await create(c, { name: "k", robot_id: "arm-1", unnorm_key: "bridge_orig" })).json() as Json;
    const set = await patch(c, k.id as string, { robot_id: "arm-2", model: "demo-vla-tiny" });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({
      name: "k",
      robot_id: "arm-2",
      model: "demo-vla-tiny",
      unnorm_key: "bridge_orig",
    });
    const cleared = await patch(c, k.id as string, { robot_id: null, unnorm_key: null });
    expect(cleared.statusCode, cleared.body).toBe(200);
    expect(cleared.json()).toMatchObject({ robot_id: null, model: "demo-vla-tiny", unnorm_key: null });
    const renamed = await patch(c, k.id as string, { name: "k2" });
    expect(renamed.json()).toMatchObject({ name: "k2", robot_id: null, model: "demo-vla-tiny" });
    expect((await list(c))[0]).toMatchObject({ name: "k2", robot_id: null, model: "demo-vla-tiny", unnorm_key: null });
  });

  it("are validated: robot id pattern, a model this server has, an unnorm_key of that model", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    failed(await create(c, { name: "x", robot_id: "-bad id" }), "/robot_id");
    failed(await create(c, { name: "x", robot_id: "" }), "/robot_id");
    const unknown = failed(await create(c, { name: "x", model: "gpt-robot" }), "/model");
    expect(JSON.stringify(unknown)).toContain("mock-openvla-7b");
    // demo-vla-tiny has bridge_orig only; without a model, the default model's keys count.
    failed(await create(c, { name: "x", model: "demo-vla-tiny", unnorm_key: "fractal20220817_data" }), "/unnorm_key");
    failed(await create(c, { name: "x", unnorm_key: "nope" }), "/unnorm_key");
    expect(await list(c)).toHaveLength(0);

    const k = (await create(c, { name: "k", unnorm_key: "fractal20220817_data" })).json() as Json;
    // Checked as they will stand: the new model lacks the key's unnorm_key.
    failed(await patch(c, k.id as string, { model: "demo-vla-tiny" }), "/unnorm_key");
    failed(await patch(c, k.id as string, { robot_id: "a b" }), "/robot_id");
    failed(await patch(c, k.id as string, { model: "" }), "/model");
    const ok = await patch(c, k.id as string, { model: "demo-vla-tiny", unnorm_key: "bridge_orig" });
    expect(ok.statusCode, ok.body).toBe(200);
    const missing = await patch(c, "00000000-0000-4000-8000-000000000000", { robot_id: "arm-1" });
    expect(missing.statusCode).toBe(404);
  });

  it("rotation keeps them on the new key", async () => {
    const c = await seedCustomer(t.database, { tier: "pro" });
    const k = (await create(c, { name: "k", robot_id: "arm-9", model: "demo-vla-tiny" })).json() as Json;
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/api-keys/${k.id}/rotate`,
      headers: owner(c),
      payload: { grace_seconds: 0 },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect((res.json() as { api_key: Json }).api_key).toMatchObject({
      robot_id: "arm-9",
      model: "demo-vla-tiny",
      unnorm_key: null,
    });
  });
});
