import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMBEDDED_REGISTRY, PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { experiments } from "../../src/platform/db/schema/index.ts";
import { jpeg, pattern } from "../engine/helpers.ts";
import { owner, xKey } from "../helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { createExperiment, split } from "./helpers.ts";

let t: InferenceTestContext;
let img: string;

beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(224, 224, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const AB = [
  { name: "control", model: "mock-openvla-7b", weight: 1 },
  { name: "candidate", model: "demo-vla-tiny", weight: 1 },
];

const infer = (key: string, robotId: string, extra: Record<string, unknown> = {}) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: xKey(key),
    payload: {
      image: img,
      instruction: "pick up the red block",
      robot_id: robotId,
      unnorm_key: "bridge_orig",
      ...extra,
    },
  });

const stop = (customerId: string, id: string) =>
  t.app.inject({ method: "POST", url: `/v1/experiments/${id}/stop`, headers: owner(customerId) });

describe("experiments: create, list, get, stop", () => {
  it("creates a split experiment, lists, gets and stops it; a stopped one frees the slot", async () => {
    const c = await newKey(t);
    const res = await createExperiment(t.app, c.customerId, split(AB, { name: "first" }));
    expect(res.statusCode, res.body).toBe(201);
    const e = res.json();
    expect(e).toMatchObject({
      name: "first",
      mode: "split",
      status: "running",
      assignment: "robot_id",
      variants: AB,
      candidate_model: null,
      stopped_at: null,
    });
    const list = await t.app.inject({ method: "GET", url: "/v1/experiments", headers: owner(c.customerId) });
    expect(list.json().data.map((x: { id: string }) => x.id)).toEqual([e.id]);
    const got = await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}`, headers: xKey(c.key) });
    expect(got.statusCode).toBe(200);
    expect(got.json().id).toBe(e.id);

    // A second split experiment while one runs: 409; a shadow one beside it is fine.
    const second = await createExperiment(t.app, c.customerId, split(AB));
    expect(second.statusCode).toBe(409);
    expect(second.json().code).toBe("experiment_running");
    const shadow = await createExperiment(t.app, c.customerId, {
      name: "sh",
      mode: "shadow",
      candidate_model: "demo-vla-tiny",
      sample_rate: 0,
    });
    expect(shadow.statusCode, shadow.body).toBe(201);

    const stopped = await stop(c.customerId, e.id);
    expect(stopped.statusCode).toBe(200);
    expect(stopped.json().status).toBe("stopped");
    expect(stopped.json().stopped_at).not.toBeNull();
    // Stopping again changes nothing.
    expect((await stop(c.customerId, e.id)).json().stopped_at).toBe(stopped.json().stopped_at);
    expect((await createExperiment(t.app, c.customerId, split(AB))).statusCode).toBe(201);
  });

  it("refuses invalid bodies with 422 naming the field", async () => {
    const c = await newKey(t);
    const cases: [Record<string, unknown>, string][] = [
      [split([AB[0] as (typeof AB)[0], { model: "no-such-model", weight: 1 }]), "/variants/1/model"],
      [
        split([
          { name: "x", model: "mock-openvla-7b", weight: 1 },
          { name: "x", model: "demo-vla-tiny", weight: 1 },
        ]),
        "/variants/1/name",
      ],
      [split([{ model: "mock-openvla-7b", weight: 1 }]), "/variants"],
      [
        split([
          { model: "mock-openvla-7b", weight: 0 },
          { model: "demo-vla-tiny", weight: 1 },
        ]),
        "/variants/0/weight",
      ],
      [split(AB, { sample_rate: 0.5 }), "/sample_rate"],
      [{ name: "s", mode: "shadow", sample_rate: 0.1 }, "/candidate_model"],
      [{ name: "s", mode: "shadow", candidate_model: "demo-vla-tiny", sample_rate: 1.5 }, "/sample_rate"],
      [{ name: "s", mode: "shadow", candidate_model: "demo-vla-tiny", sample_rate: 0.1, variants: AB }, "/variants"],
      [split(AB, { ends_at: "2020-01-01T00:00:00Z" }), "/ends_at"],
    ];
    for (const [body, path] of cases) {
      const res = await createExperiment(t.app, c.customerId, body);
      expect(res.statusCode, `${path}: ${res.body}`).toBe(422);
      expect(res.json().code).toBe("validation_failed");
      expect(JSON.stringify(res.json().errors), res.body).toContain(path);
    }
  });

  it("is tenant-isolated: another customer's id is 404 everywhere; an inference key cannot create", async () => {
    const a = await newKey(t);
    const b = await newKey(t);
    const e = (await createExperiment(t.app, a.customerId, split(AB))).json();
    for (const [method, url] of [
      ["GET", `/v1/experiments/${e.id}`],
      ["POST", `/v1/experiments/${e.id}/stop`],
      ["GET", `/v1/experiments/${e.id}/results`],
      ["GET", `/v1/experiments/${e.id}/shadow`],
    ] as const) {
      const res = await t.app.inject({ method, url, headers: owner(b.customerId) });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().code).toBe("not_found");
    }
    expect(
      (await t.app.inject({ method: "GET", url: "/v1/experiments", headers: owner(b.customerId) })).json().data,
    ).toEqual([]);
    const byKey = await t.app.inject({
      method: "POST",
      url: "/v1/experiments",
      headers: xKey(a.key),
      payload: split(AB),
    });
    expect(byKey.statusCode).toBe(403);
    expect((await t.app.inject({ method: "GET", url: "/v1/experiments" })).statusCode).toBe(401);
    // B's requests are not routed by A's experiment.
    expect((await infer(b.key, "arm-1")).json().experiment).toBeUndefined();
  });
});

describe("routing", () => {
  it("routes requests that name no model, says which variant served them, and logs it", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, split(AB))).json();
    const seen = new Map<string, string>();
    const ids: [string, string, string][] = [];
    for (let i = 0; i < 16; i++) {
      const res = await infer(c.key, `arm-${i}`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(body.experiment.id).toBe(e.id);
      const variant = AB.find((v) => v.name === body.experiment.variant);
      expect(variant, body.experiment.variant).toBeDefined();
      expect(body.model).toBe(variant?.model);
      seen.set(`arm-${i}`, body.experiment.variant);
      ids.push([body.inference_id, body.experiment.variant, body.model]);
    }
    expect(new Set(seen.values()).size).toBe(2); // 16 robots at 50/50: both variants (p of one = 2^-15)
    // Sticky: the same robot, the same variant.
    for (let i = 0; i < 16; i++)
      expect((await infer(c.key, `arm-${i}`)).json().experiment.variant).toBe(seen.get(`arm-${i}`));
    // A request naming a model is served by it, outside the experiment.
    const named = (await infer(c.key, "arm-0", { model: "mock-openvla-7b" })).json();
    expect(named.experiment).toBeUndefined();

    await flushLogs(t.app);
    for (const [id, variant, model] of ids.slice(0, 4)) {
      const row = (await t.app.inject({ method: "GET", url: `/v1/inference/${id}`, headers: xKey(c.key) })).json();
      expect(row.experiment).toEqual({ id: e.id, variant });
      expect(row.model).toBe(model);
    }
    const namedRow = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${named.inference_id}`,
      headers: xKey(c.key),
    });
    expect(namedRow.json().experiment).toBeNull();

    // Stopped: requests are served by the default model again, untagged.
    await stop(c.customerId, e.id);
    const after = (await infer(c.key, "arm-0")).json();
    expect(after.experiment).toBeUndefined();
    expect(after.model).toBe("mock-openvla-7b");
  });

  it("a variant whose model a reload removed is skipped: its robots get the default model, untagged, never a 404", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, split(AB))).json();
    const engine = t.app.platform.engine;
    // 12 robots: at 50/50 some are on the candidate (p of none = 2^-12).
    const before = new Map<string, string>();
    for (let i = 0; i < 12; i++) before.set(`cell-${i}`, (await infer(c.key, `cell-${i}`)).json().experiment.variant);
    expect([...before.values()]).toContain("candidate");
    const models = EMBEDDED_REGISTRY.models.filter((m) => m.id !== "demo-vla-tiny");
    await engine.reload(parseRegistry({ ...EMBEDDED_REGISTRY, models }, PROJECT_ROOT));
    try {
      for (const [robot, variant] of before) {
        const res = await infer(c.key, robot);
        expect(res.statusCode, res.body).toBe(200);
        const body = res.json();
        if (variant === "candidate") {
          expect(body.experiment).toBeUndefined();
          expect(body.model).toBe("mock-openvla-7b");
        } else expect(body.experiment).toEqual({ id: e.id, variant: "control" });
      }
    } finally {
      await engine.reload(parseRegistry(EMBEDDED_REGISTRY, PROJECT_ROOT));
      await stop(c.customerId, e.id);
    }
  });

  it("a failed routed request is logged with its variant", async () => {
    const c = await newKey(t);
    const e = (
      await createExperiment(
        t.app,
        c.customerId,
        split(
          [
            { name: "a", model: "mock-openvla-7b", weight: 1 },
            { name: "b", model: "mock-pi0", weight: 1 },
          ],
          { assignment: "request" },
        ),
      )
    ).json();
    // bridge_orig is not an unnorm key of mock-pi0: variant b fails with 400 invalid_unnorm_key.
    let failed: string | undefined;
    for (let i = 0; i < 40 && failed === undefined; i++) {
      const res = await infer(c.key, "arm-1");
      if (res.statusCode === 400) failed = res.json().code;
    }
    expect(failed).toBe("invalid_unnorm_key");
    await flushLogs(t.app);
    const hist = await t.app.inject({ method: "GET", url: "/v1/inference/history?status=error", headers: xKey(c.key) });
    const row = hist.json().data[0];
    expect(row.model).toBe("mock-pi0");
    expect(row.experiment).toEqual({ id: e.id, variant: "b" });
  });

  it("a scheduled experiment routes from starts_at until ends_at", async () => {
    const c = await newKey(t);
    const now = t.clock.now();
    const e = (
      await createExperiment(
        t.app,
        c.customerId,
        split(AB, {
          starts_at: new Date(now + 3_600_000).toISOString(),
          ends_at: new Date(now + 7_200_000).toISOString(),
        }),
      )
    ).json();
    expect(e.status).toBe("scheduled");
    expect((await infer(c.key, "arm-1")).json().experiment).toBeUndefined();
    t.clock.advance(3_600_000);
    try {
      expect((await infer(c.key, "arm-1")).json().experiment?.id).toBe(e.id);
      t.clock.advance(3_600_000);
      expect((await infer(c.key, "arm-1")).json().experiment).toBeUndefined();
      const got = await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}`, headers: owner(c.customerId) });
      expect(got.json().status).toBe("ended");
      // An ended experiment does not block the next, and still reads as ended afterwards.
      expect((await createExperiment(t.app, c.customerId, split(AB))).statusCode).toBe(201);
      const after = await t.app.inject({ method: "GET", url: `/v1/experiments/${e.id}`, headers: owner(c.customerId) });
      expect(after.json()).toMatchObject({ status: "ended", stopped_at: null });
    } finally {
      t.clock.advance(-7_200_000);
    }
  });

  it("/act keeps its body and says the variant in VLA-Experiment", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, split(AB))).json();
    const raw = pattern(224, 224, 1);
    const res = await t.app.inject({
      method: "POST",
      url: "/act",
      headers: { "content-type": "application/json", "x-api-key": c.key, "x-robot-id": "arm-7" },
      payload: JSON.stringify({
        image: { __numpy__: raw.toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
        instruction: "pick up the red block",
        unnorm_key: "bridge_orig",
      }),
    });
    expect(res.statusCode, res.body).toBe(200);
    const header = res.headers["vla-experiment"] as string;
    expect(header).toMatch(new RegExp(`^${e.id}; variant=(control|candidate)$`));
    const doc = res.json();
    expect(Object.keys(doc).sort()).toEqual(["__numpy__", "dtype", "shape"]);
    // The same robot over REST: the same variant.
    expect((await infer(c.key, "arm-7")).json().experiment.variant).toBe(header.split("variant=")[1]);
  });
});

describe("erasure", () => {
  it("a deleted user's experiments stay the customer's, unattributed", async () => {
    const c = await newKey(t);
    const e = (await createExperiment(t.app, c.customerId, split(AB))).json();
    const userId = randomUUID();
    // Sessions in these tests carry no user id: attribute the row directly.
    const db = t.database.db;
    await db.update(experiments).set({ createdByUserId: userId }).where(eq(experiments.id, e.id));
    const counts = await db.transaction((tx) =>
      t.app.platform.deletion.run({ tx, userId, customerId: c.customerId }, false),
    );
    expect(counts.experiments_unattributed).toBe(1);
    const [row] = await db.select().from(experiments).where(eq(experiments.id, e.id));
    expect(row?.createdByUserId).toBeNull();
    await stop(c.customerId, e.id);
  });
});
