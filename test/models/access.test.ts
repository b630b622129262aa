import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, parseRegistry, RegistryError } from "../../src/modules/models/registry.ts";
import type { Principal } from "../../src/platform/auth.ts";
import { apiKeys, customers } from "../../src/platform/db/schema/index.ts";
import { errors } from "../../src/platform/errors.ts";
import { owner, seedKey } from "../helpers/limits.ts";
import { jpeg, pattern } from "../inference/helpers.ts";
import { buildStreamApp, Client, connect, rawUpgrade, type StreamTestContext } from "../streaming/helpers.ts";

/** Issue 23: a model restricted to listed customers is invisible to every other customer. */

const STATS = path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json");
const mock = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  backend: { kind: "mock" },
  action: { dim: 7, chunk: 1 },
  dataset_statistics: STATS,
  default_unnorm_key: "bridge_orig",
  ...extra,
});

const allowed = randomUUID(); // listed in the restricted model's access block
const other = randomUUID(); // a customer not listed

function modelsConfig(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vla-access-"));
  const file = path.join(dir, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      default_model: "public",
      models: [mock("public"), mock("private", { access: { customers: [allowed] } })],
    }),
  );
  return file;
}

let t: StreamTestContext;
let allowedKey: string;
let otherKey: string;
let img: string;

beforeAll(async () => {
  t = await buildStreamApp({ MODELS_CONFIG: modelsConfig() });
  for (const id of [allowed, other]) {
    await t.database.db
      .insert(customers)
      .values({ id, name: `customer ${id}`, email: `${id}@example.com`, tier: "enterprise" });
  }
  allowedKey = (await seedKey(t.database, allowed)).key;
  otherKey = (await seedKey(t.database, other)).key;
  img = (await jpeg(224, 224, 1)).toString("base64");
  // Owner sessions as in test/helpers/limits.ts, plus `super:<customerId>` for a superuser's session.
  t.app.platform.auth.useJwt({
    async verify(credential) {
      if (credential.kind !== "jwt") throw errors.invalidToken();
      const m = /^(owner|super):([0-9a-f-]{36})$/.exec(credential.token);
      if (m === null) throw errors.invalidToken();
      const principal: Principal = {
        kind: "user",
        customerId: m[2] as string,
        userId: null,
        apiKeyId: null,
        scopes: ["inference", "admin"],
        isSuperuser: m[1] === "super",
        tier: "enterprise",
      };
      return principal;
    },
  });
});
afterAll(async () => {
  await t?.close();
});

const infer = (headers: Record<string, string>, extra: Record<string, unknown> = { model: "private" }) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers,
    payload: { image: img, instruction: "pick up the red block", robot_id: "arm-1", ...extra },
  });

const get = (url: string, headers: Record<string, string>) => t.app.inject({ method: "GET", url, headers });

describe("a model restricted to listed customers", () => {
  it("the listed customer infers with it and sees it in GET /v1/models and /v1/models/{id}", async () => {
    const res = await infer({ "x-api-key": allowedKey });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ model: "private" });
    const list = await get("/v1/models", { "x-api-key": allowedKey });
    expect(list.statusCode, list.body).toBe(200);
    expect((list.json().data as { id: string }[]).map((m) => m.id).sort()).toEqual(["private", "public"]);
    expect((await get("/v1/models/private", { "x-api-key": allowedKey })).statusCode).toBe(200);
  });

  it("another customer gets 404 unknown_model on REST, exactly as for a model that does not exist", async () => {
    const res = await infer({ "x-api-key": otherKey });
    expect(res.statusCode, res.body).toBe(404);
    const body = res.json();
    expect(body).toMatchObject({ code: "unknown_model", available_models: ["public"] });
    expect(JSON.stringify(body)).not.toContain('"private"]');
    const missing = (await infer({ "x-api-key": otherKey }, { model: "nope" })).json();
    expect(body.available_models).toEqual(missing.available_models);
    // The public model still works for it.
    expect((await infer({ "x-api-key": otherKey }, {})).statusCode).toBe(200);
  });

  it("another customer does not see it in GET /v1/models; GET /v1/models/{id} is 404 unknown_model", async () => {
    const list = await get("/v1/models", { "x-api-key": otherKey });
    expect(list.statusCode, list.body).toBe(200);
    expect((list.json().data as { id: string }[]).map((m) => m.id)).toEqual(["public"]);
    expect(list.json().default_model).toBe("public");
    const one = await get("/v1/models/private", { "x-api-key": otherKey });
    expect(one.statusCode, one.body).toBe(404);
    expect(one.json()).toMatchObject({ code: "unknown_model", available_models: ["public"] });
    // An owner session of the other customer: the same.
    expect((await get("/v1/models/private", owner(other))).statusCode).toBe(404);
  });

  it("GET /v1/robots/{id}/safety-profile?model=: 404 unknown_model for another customer, as at inference", async () => {
    const url = "/v1/robots/arm-1/safety-profile?model=private";
    const refused = await get(url, { "x-api-key": otherKey });
    expect(refused.statusCode, refused.body).toBe(404);
    expect(refused.json()).toMatchObject({ code: "unknown_model", available_models: ["public"] });
    const shown = await get(url, { "x-api-key": allowedKey });
    expect(shown.statusCode, shown.body).toBe(200);
  });

  it("a superuser's session sees and uses every model", async () => {
    const list = await get("/v1/models", { authorization: `Bearer super:${other}` });
    expect((list.json().data as { id: string }[]).map((m) => m.id).sort()).toEqual(["private", "public"]);
    expect((await get("/v1/models/private", { authorization: `Bearer super:${other}` })).statusCode).toBe(200);
    const res = await infer({ authorization: `Bearer super:${other}` });
    expect(res.statusCode, res.body).toBe(200);
  });

  it("an API key cannot default to a model restricted to another customer (422); the listed customer's can", async () => {
    const refused = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: owner(other),
      payload: { name: "bound", model: "private" },
    });
    expect(refused.statusCode, refused.body).toBe(422);
    expect(refused.body).toContain("/model");
    const created = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: owner(allowed),
      payload: { name: "bound", model: "private" },
    });
    expect(created.statusCode, created.body).toBe(201);
  });

  it("POST /act: 404 unknown_model when the key's default model is restricted to another customer", async () => {
    const act = (key: string) =>
      t.app.inject({
        method: "POST",
        url: "/act",
        headers: { "content-type": "application/json", "x-api-key": key },
        payload: JSON.stringify({
          image: { __numpy__: pattern(224, 224, 2).toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
          instruction: "pick up the red block",
        }),
      });
    const created = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: owner(allowed),
      payload: { name: "act", model: "private" },
    });
    const boundKey = (created.json() as { key: string }).key;
    expect((await act(boundKey)).statusCode).toBe(200);
    // A key of another customer whose default model is restricted (e.g. the registry changed after
    // the key was made): written directly, as the API refuses it.
    const stale = await seedKey(t.database, other);
    await t.database.db.update(apiKeys).set({ model: "private" }).where(eq(apiKeys.id, stale.id));
    const res = await act(stale.key);
    expect(res.statusCode, res.body).toBe(404);
    expect(res.headers["x-problem-code"]).toBe("unknown_model");
    // Through REST with the same key: the same 404.
    const rest = await infer({ "x-api-key": stale.key }, {});
    expect(rest.statusCode, rest.body).toBe(404);
    expect(rest.json()).toMatchObject({ code: "unknown_model" });
  });

  it("WS /v1/stream: start with the restricted model is an unknown_model error for another customer", async () => {
    const c = await connect(t, otherKey);
    c.json({ type: "start", robot_id: "arm-1", model: "private", instruction: "pick" });
    expect(await c.type("error")).toMatchObject({ code: "unknown_model" });
    c.close();
    const ok = await connect(t, allowedKey);
    ok.json({ type: "start", robot_id: "arm-1", model: "private", instruction: "pick" });
    expect(await ok.type("started")).toBeDefined();
    ok.close();
  });

  it("WS /v1/openpi: the upgrade with ?model= the restricted model is HTTP 404 unknown_model for another customer", async () => {
    const c = rawUpgrade(t.baseUrl, "/v1/openpi?model=private", { authorization: `Api-Key ${otherKey}` });
    const head = await c.head;
    const body = await head.body;
    c.socket.destroy();
    expect(head.status).toBe(404);
    expect(JSON.parse(body)).toMatchObject({ code: "unknown_model", available_models: ["public"] });
    const ok = new Client(`${t.baseUrl}/v1/openpi?model=private`, { authorization: `Api-Key ${allowedKey}` });
    await ok.opened();
    ok.close();
  });
});

describe("registry: the access block", () => {
  const parse = (models: unknown[], defaultModel = "a") => parseRegistry({ default_model: defaultModel, models }, "/");
  const problems = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (e) {
      if (e instanceof RegistryError) return [...e.problems];
      throw e;
    }
    throw new Error("no RegistryError");
  };

  it("absent: public; a list of customer ids: restricted to them", () => {
    const reg = parse([mock("a"), mock("b", { access: { customers: [allowed] } })]);
    expect(reg.models[0]?.accessCustomers).toBeUndefined();
    expect([...(reg.models[1]?.accessCustomers ?? [])]).toEqual([allowed]);
  });

  it.each([
    ["an empty list", { customers: [] }, /model "b".*access\.customers: is empty/],
    ["not a uuid", { customers: ["not-a-uuid"] }, /model "b".*access\.customers\[0\]: expected a customer id \(uuid\)/],
    ["not a list", { customers: allowed }, /model "b".*access\.customers: expected an array/],
    ["an unknown field", { customer: [allowed] }, /model "b".*access\.customer: unknown field/],
    ["not an object", "everyone", /model "b".*access: expected an object/],
  ])("%s is a problem naming the model and the field", (_label, access, pattern) => {
    const p = problems(() => parse([mock("a"), mock("b", { access })]));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(pattern);
  });

  it("the default model must be public", () => {
    const p = problems(() => parse([mock("a", { access: { customers: [allowed] } }), mock("b")]));
    expect(p).toEqual([expect.stringMatching(/default_model "a" is restricted .*must be public/)]);
  });
});
