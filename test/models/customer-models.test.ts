import { randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { customerModelServices } from "../../src/modules/models/customer-models.module.ts";
import { customerModelExample } from "../../src/modules/models/models.schemas.ts";
import type { Db } from "../../src/platform/db/client.ts";
import { auditLog, customerModels, inferenceLogs } from "../../src/platform/db/schema/index.ts";
import type { Resolver } from "../../src/platform/egress.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";
import { flushLogs, jpeg } from "../inference/helpers.ts";
import { type OpenvlaFake, startOpenvlaFake } from "./openvla-fake.ts";

/**
 * Bring-your-own model endpoints over HTTP (issue 23). The only sockets opened go to the loopback
 * fake OpenVLA server below (the operator allow-list holds 127.0.0.0/8 and allows http in this
 * file); every host name resolves through the injected resolver, never real DNS.
 */

const resolved: Record<string, string[]> = {
  "vla.robots.example.com": ["93.184.216.34"],
  "internal.example.com": ["10.0.0.7"],
  "mapped.example.com": ["2606:4700::1111", "::ffff:169.254.169.254"],
};
const lookups: string[] = [];
const resolver: Resolver = async (host) => {
  lookups.push(host);
  const list = resolved[host];
  if (list === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
  return list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }) as const);
};

let fake: OpenvlaFake;
let fakeUrl: string;

let t: LimitsContext;
let img: string;
/** Enterprise customer A (admin key and inference-only key), enterprise B, pro customer C. */
const A = { id: "", admin: "", robot: "" };
const B = { id: "", admin: "" };
const C = { id: "", admin: "" };

beforeAll(async () => {
  fake = await startOpenvlaFake();
  fakeUrl = fake.url;

  t = await buildLimitsApp({
    env: {
      MODELS_WARM_UP: "false",
      BYOM_ALLOW_HTTP: "true",
      BYOM_ALLOWED_NETWORKS: "127.0.0.0/8",
      BYOM_MAX_MODELS_PER_CUSTOMER: "3",
    },
    egressResolver: resolver,
  });
  for (const [c, tier] of [
    [A, "enterprise"],
    [B, "enterprise"],
    [C, "pro"],
  ] as const) {
    c.id = await seedCustomer(t.database, { tier, perMinute: 1_000_000 });
    c.admin = (await seedKey(t.database, c.id, { scopes: ["inference", "admin"] })).key;
  }
  A.robot = (await seedKey(t.database, A.id, { scopes: ["inference"] })).key;
  img = (await jpeg(64, 48, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

const model = (id: string, endpoints: string[] = [fakeUrl], extra: Record<string, unknown> = {}) => ({
  ...customerModelExample,
  id,
  backend: { kind: "openvla-http", endpoints, retries: 0 },
  ...extra,
});
const register = (key: string, body: unknown) =>
  t.app.inject({ method: "POST", url: "/v1/models", headers: { "x-api-key": key }, payload: body as object });
const get = (key: string, url: string) => t.app.inject({ method: "GET", url, headers: { "x-api-key": key } });
const del = (key: string, id: string) =>
  t.app.inject({ method: "DELETE", url: `/v1/models/${id}`, headers: { "x-api-key": key } });
const infer = (key: string, modelId: string) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "put the bolt in the tray", model: modelId, robot_id: "cell-1" },
  });

describe("registering a model (POST /v1/models)", () => {
  it("201 with Location and the model (owner customer); the endpoint serves /v1/inference for that customer", async () => {
    const res = await register(A.admin, model("kitting"));
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers.location).toBe("/v1/models/kitting");
    expect(res.json()).toMatchObject({
      id: "kitting",
      owner: "customer",
      backend: "openvla-http",
      action: { dim: 7, chunk: 1 },
      unnorm_keys: ["kitting_v2"],
      default_unnorm_key: "kitting_v2",
    });
    const row = await t.database.db
      .select()
      .from(customerModels)
      .where(and(eq(customerModels.customerId, A.id), eq(customerModels.id, "kitting")));
    expect(row).toHaveLength(1);

    const before = fake.calls.length;
    const out = await infer(A.robot, "kitting");
    expect(out.statusCode, out.body).toBe(200);
    expect(out.json()).toMatchObject({
      model: "kitting",
      unnorm_key: "kitting_v2",
      action: [0.01, -0.02, 0.03, 0, 0, 0, 1],
    });
    expect(fake.calls.slice(before).map((c) => ({ url: c.url, instruction: c.doc.instruction }))).toEqual([
      { url: "/act", instruction: "put the bolt in the tray" },
    ]);

    await flushLogs(t.app);
    const logs = await t.database.db
      .select()
      .from(inferenceLogs)
      .where(and(eq(inferenceLogs.customerId, A.id), eq(inferenceLogs.model, "kitting")));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ status: "ok", backend: "openvla-http", robotId: "cell-1" });

    const audit = await t.database.db.select().from(auditLog).where(eq(auditLog.action, "model.register"));
    expect(audit.map((a) => a.targetId)).toContain("kitting");
  });

  it("lists the customer's own model after the service's, and describes it; another customer sees neither", async () => {
    const list = await get(A.robot, "/v1/models");
    expect(list.statusCode, list.body).toBe(200);
    const data = list.json().data as { id: string; owner: string }[];
    expect(data.at(-1)).toMatchObject({ id: "kitting", owner: "customer" });
    expect(data.filter((m) => m.owner === "operator").length).toBeGreaterThan(0);
    expect((await get(A.robot, "/v1/models/kitting")).json()).toMatchObject({ id: "kitting", owner: "customer" });

    const other = await get(B.admin, "/v1/models");
    expect((other.json().data as { id: string }[]).map((m) => m.id)).not.toContain("kitting");
    const one = await get(B.admin, "/v1/models/kitting");
    expect(one.statusCode).toBe(404);
    expect(one.json()).toMatchObject({ code: "unknown_model" });
    expect(JSON.stringify(one.json().available_models)).not.toContain("kitting");
  });

  it("another customer naming the id gets 404 unknown_model on inference, and its own model of that id is separate", async () => {
    const before = fake.calls.length;
    const res = await infer(B.admin, "kitting");
    expect(res.statusCode, res.body).toBe(404);
    expect(res.json()).toMatchObject({ code: "unknown_model" });
    expect(fake.calls.length).toBe(before);
    // B may use the same id for its own model.
    expect((await register(B.admin, model("kitting"))).statusCode).toBe(201);
    expect((await del(B.admin, "kitting")).statusCode).toBe(204);
    expect((await infer(A.robot, "kitting")).statusCode).toBe(200);
  });

  it("non-enterprise customers get 403 enterprise_required; an inference-only key gets 403", async () => {
    const pro = await register(C.admin, model("mine"));
    expect(pro.statusCode, pro.body).toBe(403);
    expect(pro.json()).toMatchObject({ code: "enterprise_required" });
    const robot = await register(A.robot, model("mine"));
    expect(robot.statusCode).toBe(403);
    expect(robot.json().code).not.toBe("enterprise_required");
    const anonymous = await t.app.inject({ method: "POST", url: "/v1/models", payload: model("mine") });
    expect(anonymous.statusCode).toBe(401);
  });

  it("422 validation_failed with field details for a bad document", async () => {
    const cases: [unknown, string][] = [
      [{ ...model("x"), backend: { kind: "onnx", endpoints: [fakeUrl] } }, "/backend/kind"],
      [{ ...model("x"), dataset_statistics: "/etc/passwd" }, "/dataset_statistics"],
      [{ ...model("x"), action: { dim: 6 } }, "/dataset_statistics/kitting_v2"],
      [{ ...model("x"), default_unnorm_key: "nope" }, "/default_unnorm_key"],
      [
        { ...model("x"), backend: { kind: "openvla-http", endpoints: [fakeUrl], timeout_ms: 600_000 } },
        "/backend/timeout_ms",
      ],
      [{ ...model("x"), access: { customers: [B.id] } }, "/access"],
      [{ ...model("x"), id: "Bad Id" }, "/id"],
      // Every request's image is resized to the model's side and held while it waits.
      [{ ...model("x"), image: { size: 2048 } }, "/image/size"],
      [{ ...model("x"), image: { width: 224, height: 1024 } }, "/image/height"],
      // Every answer is parsed on the event loop: 1 MiB at most (8 MiB before).
      [
        { ...model("x"), backend: { kind: "openvla-http", endpoints: [fakeUrl], max_response_bytes: 2 * 1024 * 1024 } },
        "/backend/max_response_bytes",
      ],
    ];
    for (const [body, path] of cases) {
      const res = await register(A.admin, body);
      expect(res.statusCode, `${path}: ${res.body}`).toBe(422);
      expect(res.json().code).toBe("validation_failed");
      expect((res.json().errors as { path: string }[]).map((e) => e.path).join(" "), res.body).toContain(path);
    }
  });

  it("422 endpoint_not_allowed for refused URLs: literal private addresses, private DNS answers, credentials", async () => {
    const cases: [string, RegExp][] = [
      ["https://10.0.0.1", /private network/],
      ["https://169.254.169.254", /link-local/],
      ["https://[::ffff:10.0.0.1]", /IPv4-mapped private network/],
      ["https://[fd00::1]", /unique local/],
      // Names: one answer, naming no address (the service's DNS may be private).
      ["https://internal.example.com", /^internal\.example\.com does not resolve to public addresses only$/],
      ["https://mapped.example.com", /^mapped\.example\.com does not resolve to public addresses only$/],
      ["https://nowhere.example.com", /^nowhere\.example\.com does not resolve to public addresses only$/],
      ["https://user:secret@vla.robots.example.com", /credentials/],
    ];
    for (const [url, why] of cases) {
      const res = await register(A.admin, model("refused", [url]));
      expect(res.statusCode, `${url}: ${res.body}`).toBe(422);
      expect(res.json()).toMatchObject({ code: "endpoint_not_allowed" });
      expect(res.json().errors[0]).toMatchObject({ path: "/backend/endpoints/0" });
      expect(res.json().errors[0].message).toMatch(why);
    }
    expect(lookups).toEqual(expect.arrayContaining(["internal.example.com", "mapped.example.com"]));
    expect((await get(A.admin, "/v1/models/refused")).statusCode).toBe(404);
  });

  it("409 model_id_taken for its own id again and for a service model's id", async () => {
    const again = await register(A.admin, model("kitting"));
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: "model_id_taken" });
    const service = await register(A.admin, model("mock-openvla-7b"));
    expect(service.statusCode).toBe(409);
    expect(service.json()).toMatchObject({ code: "model_id_taken" });
  });

  it("409 model_limit_reached beyond BYOM_MAX_MODELS_PER_CUSTOMER", async () => {
    expect((await register(A.admin, model("second", ["https://vla.robots.example.com"]))).statusCode).toBe(201);
    expect((await register(A.admin, model("third", ["https://vla.robots.example.com"]))).statusCode).toBe(201);
    const res = await register(A.admin, model("fourth", ["https://vla.robots.example.com"]));
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json()).toMatchObject({ code: "model_limit_reached", limit: 3 });
  });
});

describe("replacing a model (PUT /v1/models/{id})", () => {
  const put = (key: string, id: string, body: unknown) =>
    t.app.inject({ method: "PUT", url: `/v1/models/${id}`, headers: { "x-api-key": key }, payload: body as object });

  it("200 with the new document, served at once; refused documents leave the old one in place", async () => {
    const res = await put(A.admin, "kitting", model("kitting", [fakeUrl], { description: "v2 of the kitting policy" }));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: "kitting", owner: "customer", description: "v2 of the kitting policy" });
    expect((await get(A.robot, "/v1/models/kitting")).json().description).toBe("v2 of the kitting policy");

    const refused = await put(A.admin, "kitting", model("kitting", ["https://internal.example.com"]));
    expect(refused.statusCode).toBe(422);
    expect(refused.json().code).toBe("endpoint_not_allowed");
    const mismatch = await put(A.admin, "kitting", model("other"));
    expect(mismatch.statusCode).toBe(422);
    expect(mismatch.json().errors[0]).toMatchObject({ path: "/id" });
    expect((await infer(A.robot, "kitting")).statusCode).toBe(200);
  });

  it("another customer's id and a service model are 404 unknown_model", async () => {
    expect((await put(B.admin, "kitting", model("kitting"))).json()).toMatchObject({ code: "unknown_model" });
    const service = await put(A.admin, "mock-openvla-7b", model("mock-openvla-7b"));
    expect(service.statusCode).toBe(404);
    expect((await get(A.robot, "/v1/models/kitting")).json().description).toBe("v2 of the kitting policy");
  });
});

describe("deleting a model (DELETE /v1/models/{id})", () => {
  it("another customer's id, a service model and an unknown id are 404 unknown_model", async () => {
    for (const [key, id] of [
      [B.admin, "kitting"],
      [A.admin, "mock-openvla-7b"],
      [A.admin, "nope"],
    ] as const) {
      const res = await del(key, id);
      expect(res.statusCode, `${id}: ${res.body}`).toBe(404);
      expect(res.json()).toMatchObject({ code: "unknown_model" });
    }
    expect((await infer(A.robot, "kitting")).statusCode).toBe(200);
  });

  it("204; the model is no longer served or listed", async () => {
    expect((await del(A.admin, "third")).statusCode).toBe(204);
    const res = await infer(A.robot, "third");
    expect(res.statusCode).toBe(404);
    expect((await get(A.admin, "/v1/models/third")).statusCode).toBe(404);
    const rows = await t.database.db.select().from(customerModels).where(eq(customerModels.customerId, A.id));
    expect(rows.map((r) => r.id).sort()).toEqual(["kitting", "second"]);
  });
});

describe("every instance serves the customer's models", () => {
  it("a second instance on the same database loads them at startup and follows a broadcast", async () => {
    const second = await buildLimitsApp({
      database: t.database,
      env: { MODELS_WARM_UP: "false", BYOM_ALLOW_HTTP: "true", BYOM_ALLOWED_NETWORKS: "127.0.0.0/8" },
      egressResolver: resolver,
    });
    try {
      const out = await second.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": A.robot },
        payload: { image: img, instruction: "pick", model: "kitting", robot_id: "cell-2" },
      });
      expect(out.statusCode, out.body).toBe(200);
      expect(out.json().model).toBe("kitting");
      // Deleted through the first instance: the broadcast (here delivered by hand) unloads it.
      expect((await del(A.admin, "second")).statusCode).toBe(204);
      expect(second.app.platform.engine.customerModelIds(A.id).sort()).toEqual(["kitting", "second"]);
      await customerModelServices.get(second.app.platform)?.sync(A.id, "second");
      expect(second.app.platform.engine.customerModelIds(A.id)).toEqual(["kitting"]);
    } finally {
      await second.close();
    }
  });
});

describe("erasure and broadcasts", () => {
  it("erasing a customer deletes its rows and stops serving its models", async () => {
    const D = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
    const key = (await seedKey(t.database, D, { scopes: ["inference", "admin"] })).key;
    expect((await register(key, model("doomed"))).statusCode).toBe(201);
    const deletion = t.app.platform.deletion;
    const counts = await t.database.db.transaction((tx) =>
      deletion.run({ tx: tx as unknown as Db, userId: randomUUID(), customerId: D }, true),
    );
    expect(counts.customer_models).toBe(1);
    await deletion.afterCommit({ userId: randomUUID(), customerId: D, wholeCustomer: true });
    expect(t.app.platform.engine.customerModelIds(D)).toEqual([]);
  });

  /**
   * Customer E's model "elsewhere" is served by a second instance only: its endpoint is in a network
   * the second allow-lists and the first does not (a rollout of new settings), so the first never
   * loads it. Erasing E through the first instance must still make the second drop it.
   */
  async function erasureReachesAnotherInstance(withRedis: boolean) {
    const env = {
      MODELS_WARM_UP: "false",
      BYOM_ALLOW_HTTP: "true",
      BYOM_ALLOWED_NETWORKS: "127.0.0.0/8,10.0.0.0/8",
    };
    const second = await buildLimitsApp({
      database: t.database,
      ...(withRedis ? { redisKeyPrefix: t.redis.keyPrefix } : {}),
      env,
      egressResolver: resolver,
    });
    const published: [string, string][] = [];
    const bus = t.app.platform.invalidation;
    const publish = bus.publish.bind(bus);
    const spy = vi.spyOn(bus, "publish").mockImplementation(async (topic, id) => {
      published.push([topic, id]);
      await publish(topic, id);
    });
    try {
      if (withRedis) {
        await vi.waitFor(() => expect(second.app.platform.invalidation.broadcasting).toBe(true));
        await vi.waitFor(() => expect(bus.broadcasting).toBe(true));
      }
      const E = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
      const key = (await seedKey(t.database, E, { scopes: ["inference", "admin"] })).key;
      const res = await second.app.inject({
        method: "POST",
        url: "/v1/models",
        headers: { "x-api-key": key },
        payload: model("elsewhere", ["http://10.0.0.7:8000"]),
      });
      expect(res.statusCode, res.body).toBe(201);
      expect(second.app.platform.engine.customerModelIds(E)).toEqual(["elsewhere"]);
      // The first instance reads the row (as its broadcast would have it) and refuses to serve it.
      await customerModelServices.get(t.app.platform)?.sync(E, "elsewhere");
      expect(t.app.platform.engine.customerModelIds(E)).toEqual([]);

      const deletion = t.app.platform.deletion;
      await t.database.db.transaction((tx) =>
        deletion.run({ tx: tx as unknown as Db, userId: randomUUID(), customerId: E }, true),
      );
      await deletion.afterCommit({ userId: randomUUID(), customerId: E, wholeCustomer: true });
      if (withRedis) {
        await vi.waitFor(() => expect(second.app.platform.engine.customerModelIds(E)).toEqual([]), { timeout: 5_000 });
      } else {
        // Without Redis the bus is local: what the first instance published is delivered by hand.
        for (const [topic, id] of published) await second.app.platform.invalidation.publish(topic, id);
        await vi.waitFor(() => expect(second.app.platform.engine.customerModelIds(E)).toEqual([]));
      }
    } finally {
      spy.mockRestore();
      await second.close();
    }
  }

  it("erasing a customer makes every instance drop its models, also those the erasing one never loaded", async () => {
    await erasureReachesAnotherInstance(false);
  });

  it.runIf(process.env.TEST_REDIS_URL !== undefined)(
    "with Redis, erasing a customer makes another instance drop the models only it served",
    async () => {
      await erasureReachesAnotherInstance(true);
    },
  );

  it.runIf(process.env.TEST_REDIS_URL !== undefined)(
    "with Redis, another instance serves a new model after the broadcast, without a restart",
    async () => {
      const second = await buildLimitsApp({
        database: t.database,
        redisKeyPrefix: t.redis.keyPrefix,
        env: { MODELS_WARM_UP: "false", BYOM_ALLOW_HTTP: "true", BYOM_ALLOWED_NETWORKS: "127.0.0.0/8" },
        egressResolver: resolver,
      });
      try {
        await vi.waitFor(() => expect(second.app.platform.invalidation.broadcasting).toBe(true));
        await vi.waitFor(() => expect(t.app.platform.invalidation.broadcasting).toBe(true));
        expect(second.app.platform.engine.customerModelIds(B.id)).toEqual([]);
        expect((await register(B.admin, model("late"))).statusCode).toBe(201);
        await vi.waitFor(() => expect(second.app.platform.engine.customerModelIds(B.id)).toEqual(["late"]), {
          timeout: 5_000,
        });
        expect((await del(B.admin, "late")).statusCode).toBe(204);
        await vi.waitFor(() => expect(second.app.platform.engine.customerModelIds(B.id)).toEqual([]), {
          timeout: 5_000,
        });
      } finally {
        await second.close();
      }
    },
  );
});

describe("experiments over a customer's own endpoint", () => {
  it("a split experiment may name the customer's model (only its own); once deleted, its share gets the default", async () => {
    expect((await register(A.admin, model("ab-cand"))).statusCode).toBe(201);
    const create = (key: string) =>
      t.app.inject({
        method: "POST",
        url: "/v1/experiments",
        headers: { "x-api-key": key },
        payload: {
          name: "own endpoint",
          assignment: "request",
          variants: [
            { name: "control", model: "mock-openvla-7b", weight: 1 },
            { name: "mine", model: "ab-cand", weight: 1 },
          ],
        },
      });
    const other = await create(B.admin);
    expect(other.statusCode, other.body).toBe(422);
    expect(other.json().errors.map((x: { path: string }) => x.path)).toContain("/variants/1/model");
    const e = await create(A.admin);
    expect(e.statusCode, e.body).toBe(201);
    const routed = () =>
      t.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": A.robot },
        payload: { image: img, instruction: "put the bolt in the tray", robot_id: "cell-1" },
      });
    const served = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const res = await routed();
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(body.experiment.variant).toBe(body.model === "ab-cand" ? "mine" : "control");
      served.add(body.model);
    }
    expect([...served].sort()).toEqual(["ab-cand", "mock-openvla-7b"]); // p of one only = 2^-23
    expect((await del(A.admin, "ab-cand")).statusCode).toBe(204);
    for (let i = 0; i < 12; i++) {
      const res = await routed();
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().model).toBe("mock-openvla-7b");
    }
    await t.app.inject({
      method: "POST",
      url: `/v1/experiments/${e.json().id}/stop`,
      headers: { "x-api-key": A.admin },
    });
  });
});
