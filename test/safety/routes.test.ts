import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { safetyServices, safetyWriters } from "../../src/modules/safety/safety.module.ts";
import { jpeg, pattern } from "../engine/helpers.ts";
import { buildLimitsApp, FakeClock, hasRedis, owner, seedCustomer, seedKey, xKey } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";

let t: InferenceTestContext;
let img: string;

beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(224, 224, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const flush = async () => {
  const w = safetyWriters.get(t.app.platform);
  if (w === undefined) throw new Error("no safety writers");
  await w.incidents.flush();
  await w.lastSeen.flush();
};

const infer = (robotId: string, extra: Record<string, unknown> = {}, key = t.key) =>
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

const putProfile = (robotId: string, profile: unknown, headers: Record<string, string> = owner(t.customerId)) =>
  t.app.inject({
    method: "PUT",
    url: `/v1/robots/${robotId}/safety-profile`,
    headers,
    payload: profile as Record<string, unknown>,
  });

/** A limit the mock's actions always exceed by far (critical), so the policy decides the outcome. */
const tight = (policy: string) => ({
  max_linear_velocity: 0.0001,
  policy: { low: policy, medium: policy, high: policy, critical: policy },
});

const norm3 = (a: number[]) => Math.hypot(a[0] as number, a[1] as number, a[2] as number);

describe("the profile view shows the profile the gate applies", () => {
  const view = async (robotId: string, query: string) => {
    const res = await t.app.inject({
      method: "GET",
      url: `/v1/robots/${robotId}/safety-profile${query}`,
      headers: xKey(t.key),
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as {
      applies_to: { model: string | null; unnorm_key: string | null };
      profile: { gripper: [number, number] } & Record<string, unknown>;
    };
  };
  const service = () => {
    const s = safetyServices.get(t.app.platform);
    if (s === undefined) throw new Error("no safety service");
    return s;
  };
  const gate = (modelId: string, unnormKey: string, gripper: number) =>
    service().check({
      customerId: t.customerId,
      robotId: undefined,
      inferenceId: `view-${randomBytes(4).toString("hex")}`,
      modelId,
      unnormKey,
      decoded: { action: [0, 0, 0, 0, 0, 0, gripper] },
      previousAction: null,
    });

  it("for every model and unnorm key: equal profiles, and a gripper outside the shown range is flagged", async () => {
    const engine = t.app.platform.engine;
    // One robot on defaults, one with a stored profile that leaves the gripper to the defaults.
    expect((await putProfile("arm-view", { control_hz: 10, max_linear_velocity: 0.4 })).statusCode).toBe(200);
    let pairs = 0;
    for (const model of engine.modelIds()) {
      const info = engine.describe(model);
      for (const key of info.unnorm_keys) {
        for (const robot of ["arm-defaults", "arm-view"]) {
          const shown = await view(robot, `?model=${model}&unnorm_key=${key}`);
          expect(shown.applies_to).toEqual({ model, unnorm_key: key });
          const applied = await service().profileFor(t.customerId, robot, key, model);
          expect(shown.profile, `${model} ${key} ${robot}`).toEqual(applied);
          if (key === info.default_unnorm_key) expect((await view(robot, `?model=${model}`)).profile).toEqual(applied);
          if (model === engine.defaultModel) expect((await view(robot, `?unnorm_key=${key}`)).profile).toEqual(applied);
        }
        const [lo, hi] = (await view("arm-defaults", `?model=${model}&unnorm_key=${key}`)).profile.gripper;
        // These statistics put the gripper in RLDS's [0, 1] (0 = closed, 1 = open).
        expect([lo, hi]).toEqual([0, 1]);
        for (const g of [lo - 0.48, lo - 0.85, hi + 0.3]) {
          const out = await gate(model, key, g);
          expect(
            out.safety.violations.map((v) => v.type),
            `${model} ${key} gripper ${g}`,
          ).toContain("gripper");
          expect(out.action[6]).toBeGreaterThanOrEqual(lo);
          expect(out.action[6]).toBeLessThanOrEqual(hi);
        }
        for (const g of [lo, (lo + hi) / 2, hi]) {
          const out = await gate(model, key, g);
          expect(out.safety.violations.map((v) => v.type)).not.toContain("gripper");
        }
        pairs++;
      }
    }
    expect(pairs).toBeGreaterThanOrEqual(3); // demo-vla-tiny: bridge_orig; mock: bridge_orig, fractal
    // With neither, the view is what a request naming neither gets: the default model's default
    // key, or (a default model with several keys and no default, which inference refuses) the
    // global default.
    const def = engine.describe(engine.defaultModel).default_unnorm_key;
    const plain = await view("arm-view", "");
    if (def === null) {
      expect(plain.applies_to).toEqual({ model: null, unnorm_key: null });
      expect(plain.profile).toEqual(await service().profileFor(t.customerId, "arm-view"));
    } else {
      expect(plain.applies_to).toEqual({ model: engine.defaultModel, unnorm_key: def });
      expect(plain.profile).toEqual(await service().profileFor(t.customerId, "arm-view", def, engine.defaultModel));
    }
  });

  it("a stored gripper range wins, in the view and in the gate alike", async () => {
    expect((await putProfile("arm-wide", { gripper: [-1, 1] })).statusCode).toBe(200);
    const shown = await view("arm-wide", "?model=demo-vla-tiny");
    expect(shown.profile.gripper).toEqual([-1, 1]);
    expect(shown.profile).toEqual(await service().profileFor(t.customerId, "arm-wide", "bridge_orig", "demo-vla-tiny"));
  });

  it("refuses a model or unnorm key that inference would refuse", async () => {
    const unknownModel = await t.app.inject({
      method: "GET",
      url: "/v1/robots/arm-x/safety-profile?model=nope",
      headers: xKey(t.key),
    });
    expect(unknownModel.statusCode).toBe(404);
    expect(unknownModel.json().code).toBe("unknown_model");
    const unknownKey = await t.app.inject({
      method: "GET",
      url: "/v1/robots/arm-x/safety-profile?model=demo-vla-tiny&unnorm_key=fractal20220817_data",
      headers: xKey(t.key),
    });
    expect(unknownKey.statusCode).toBe(400);
    expect(unknownKey.json().code).toBe("invalid_unnorm_key");
  });
});

describe("robot safety profiles", () => {
  it("GET gives defaults for an unconfigured robot; PUT stores, GET shows effective and stored", async () => {
    const before = await t.app.inject({ method: "GET", url: "/v1/robots/arm-p/safety-profile", headers: xKey(t.key) });
    expect(before.statusCode, before.body).toBe(200);
    expect(before.json()).toMatchObject({
      robot_id: "arm-p",
      source: "default",
      stored: null,
      emergency_stop: null,
      profile: { control_hz: 5, max_linear_velocity: 0.5, gripper: [0, 1] },
    });

    const put = await putProfile("arm-p", { control_hz: 10, workspace: { z: [0.05, 0.5] } });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toMatchObject({
      source: "custom",
      stored: { control_hz: 10, workspace: { z: [0.05, 0.5] } },
      profile: { control_hz: 10, workspace: { x: [-0.5, 0.5], y: [-0.5, 0.5], z: [0.05, 0.5] } },
    });

    const after = await t.app.inject({
      method: "GET",
      url: "/v1/robots/arm-p/safety-profile?unnorm_key=droid",
      headers: xKey(t.key),
    });
    // The stored fields win; the rest come from the franka (DROID) defaults.
    expect(after.json()).toMatchObject({
      source: "custom",
      defaults: "franka",
      profile: { control_hz: 10, max_linear_velocity: 1.0, workspace: { x: [0.2, 0.8], z: [0.05, 0.5] } },
    });

    const bridge = await t.app.inject({
      method: "GET",
      url: "/v1/robots/arm-p/safety-profile?unnorm_key=bridge_orig&model=mock-openvla-7b",
      headers: xKey(t.key),
    });
    // The gripper range of the model's bridge_orig statistics (RLDS: 0 = closed, 1 = open).
    expect(bridge.json().profile.gripper).toEqual([0, 1]);
    expect(bridge.json().applies_to).toEqual({ model: "mock-openvla-7b", unnorm_key: "bridge_orig" });
  });

  it("refuses invalid profiles with 422 invalid_safety_profile listing every problem", async () => {
    const res = await putProfile("arm-p", {
      control_hz: -1,
      workspace: { x: [0.5, -0.5] },
      max_linear_velocity: "fast",
      keep_out_zones: [{ type: "sphere", center: [0, 0], radius: 0 }],
      policy: { low: "reject", medium: "clamp" },
      colour: "red",
    });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    const body = res.json();
    expect(body.code).toBe("invalid_safety_profile");
    const paths = body.errors.map((e: { path: string }) => e.path).sort();
    expect(paths).toEqual(
      [
        "/colour",
        "/control_hz",
        "/keep_out_zones/0/center",
        "/keep_out_zones/0/radius",
        "/max_linear_velocity",
        "/policy/medium",
        "/workspace/x",
      ].sort(),
    );
    // Nothing was changed.
    const get = await t.app.inject({ method: "GET", url: "/v1/robots/arm-p/safety-profile", headers: xKey(t.key) });
    expect(get.json().stored).toEqual({ control_hz: 10, workspace: { z: [0.05, 0.5] } });

    for (const payload of ["[1, 2]", '"x"']) {
      const r = await t.app.inject({
        method: "PUT",
        url: "/v1/robots/arm-p/safety-profile",
        headers: { ...owner(t.customerId), "content-type": "application/json" },
        payload,
      });
      expect(r.statusCode, r.body).toBe(422);
      expect(r.json().code).toBe("invalid_safety_profile");
    }
    const malformed = await t.app.inject({
      method: "PUT",
      url: "/v1/robots/arm-p/safety-profile",
      headers: { ...owner(t.customerId), "content-type": "application/json" },
      payload: '{"control_hz": ',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().code).toBe("invalid_json");
    const badId = await putProfile("-bad id", {});
    expect(badId.statusCode).toBe(400);
    expect(badId.json().code).toBe("invalid_request");
  });

  it("needs the admin scope to change a profile or clear a stop", async () => {
    const put = await putProfile("arm-p", { control_hz: 3 }, xKey(t.key));
    expect(put.statusCode).toBe(403);
    const del = await t.app.inject({ method: "DELETE", url: "/v1/robots/arm-p/safety-profile", headers: xKey(t.key) });
    expect(del.statusCode).toBe(403);
    const clear = await t.app.inject({ method: "POST", url: "/v1/robots/arm-p/clear-stop", headers: xKey(t.key) });
    expect(clear.statusCode).toBe(403);
    const admin = await seedKey(t.database, t.customerId, { scopes: ["admin"] });
    const ok = await putProfile("arm-admin", { control_hz: 3 }, xKey(admin.key));
    expect(ok.statusCode, ok.body).toBe(200);
    const noAuth = await t.app.inject({ method: "GET", url: "/v1/robots" });
    expect(noAuth.statusCode).toBe(401);
  });

  it("DELETE removes the profile (204), then 404", async () => {
    await putProfile("arm-del", { control_hz: 7 });
    const del = await t.app.inject({
      method: "DELETE",
      url: "/v1/robots/arm-del/safety-profile",
      headers: owner(t.customerId),
    });
    expect(del.statusCode, del.body).toBe(204);
    const again = await t.app.inject({
      method: "DELETE",
      url: "/v1/robots/arm-del/safety-profile",
      headers: owner(t.customerId),
    });
    expect(again.statusCode).toBe(404);
    const get = await t.app.inject({ method: "GET", url: "/v1/robots/arm-del/safety-profile", headers: xKey(t.key) });
    expect(get.json()).toMatchObject({ source: "default", stored: null });
  });

  it("is tenant-isolated: another customer never sees or changes this customer's robots", async () => {
    await putProfile("arm-iso", { control_hz: 9 });
    const other = await newKey(t);
    const get = await t.app.inject({
      method: "GET",
      url: "/v1/robots/arm-iso/safety-profile",
      headers: xKey(other.key),
    });
    expect(get.json()).toMatchObject({ source: "default", stored: null });
    const del = await t.app.inject({
      method: "DELETE",
      url: "/v1/robots/arm-iso/safety-profile",
      headers: owner(other.customerId),
    });
    expect(del.statusCode).toBe(404);
    const list = await t.app.inject({ method: "GET", url: "/v1/robots", headers: xKey(other.key) });
    expect(list.json().data).toEqual([]);
    const mine = await t.app.inject({ method: "GET", url: "/v1/robots/arm-iso/safety-profile", headers: xKey(t.key) });
    expect(mine.json().stored).toEqual({ control_hz: 9 });
  });
});

describe("safety on the inference path", () => {
  it("passes ordinary mock actions and says which checks it skipped", async () => {
    const res = await infer("arm-ok");
    expect(res.statusCode, res.body).toBe(200);
    const { safety, action } = res.json();
    expect(safety.status).toBe("pass");
    expect(safety.raw_action).toEqual(action);
    expect(safety.skipped.map((s: { check: string }) => s.check)).toContain("workspace");
  });

  it("clamps per the policy: the safe action satisfies the limit, the raw one is reported", async () => {
    await putProfile("arm-clamp", tight("clamp"));
    const res = await infer("arm-clamp");
    expect(res.statusCode, res.body).toBe(200);
    const { safety, action, inference_id } = res.json();
    expect(safety.status).toBe("clamped");
    expect(safety.action_taken).toBe("clamped");
    expect(safety.violations[0]).toMatchObject({ type: "linear_velocity", severity: "critical", limit: 0.0001 });
    expect(norm3(action) * 5).toBeLessThanOrEqual(0.0001 * (1 + 1e-9));
    expect(norm3(safety.raw_action)).toBeGreaterThan(norm3(action));
    // The log row keeps the safe action and the verdict.
    const { flushLogs } = await import("../inference/helpers.ts");
    await flushLogs(t.app);
    const row = await t.app.inject({ method: "GET", url: `/v1/inference/${inference_id}`, headers: xKey(t.key) });
    expect(row.json()).toMatchObject({ action, safety_status: "clamped" });
  });

  it("rejects per the policy: zero motion with the reason", async () => {
    await putProfile("arm-reject", tight("reject"));
    const res = await infer("arm-reject", { robot_state: { ee_position: [0, 0, 0.3], gripper: 1 } });
    const { safety, action } = res.json();
    expect(safety.status).toBe("rejected");
    expect(action.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(typeof safety.reason).toBe("string");
  });

  it("checks the workspace only when robot_state gives a position", async () => {
    await putProfile("arm-ws", { workspace: { x: [-0.5, 0.5], y: [-0.5, 0.5], z: [0.0, 0.6] } });
    const res = await infer("arm-ws", { robot_state: { ee_position: [0.5, 0.5, 0.6] } });
    const { safety } = res.json();
    expect(safety.skipped.map((s: { check: string }) => s.check)).not.toContain("workspace");
    const far = await infer("arm-ws2", { robot_state: { ee_position: [3, 3, 3] } });
    expect(far.json().safety.violations.map((v: { type: string }) => v.type)).toContain("workspace");
  });

  it("emergency stop: zero motion, then 409 robot_stopped (REST and /act) until the owner clears it", async () => {
    await putProfile("arm-stop", tight("emergency_stop"));
    const res = await infer("arm-stop");
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().safety.status).toBe("emergency_stop");
    expect(res.json().action.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);

    const refused = await infer("arm-stop");
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: "robot_stopped", robot_id: "arm-stop" });
    const act = await t.app.inject({
      method: "POST",
      url: "/act",
      headers: { ...xKey(t.key), "x-robot-id": "arm-stop" },
      payload: {
        image: encodeJsonNumpy(new Uint8Array(pattern(224, 224, 2)), [224, 224, 3], "|u1"),
        instruction: "pick",
        unnorm_key: "bridge_orig",
      },
    });
    expect(act.statusCode).toBe(409);
    expect(act.body).toBe('"error"');
    expect(act.headers["x-problem-code"]).toBe("robot_stopped");

    const list = await t.app.inject({ method: "GET", url: "/v1/robots", headers: xKey(t.key) });
    const stopped = list.json().data.find((r: { robot_id: string }) => r.robot_id === "arm-stop");
    expect(stopped.emergency_stop).toMatchObject({ inference_id: res.json().inference_id });

    const clear = await t.app.inject({
      method: "POST",
      url: "/v1/robots/arm-stop/clear-stop",
      headers: owner(t.customerId),
    });
    expect(clear.statusCode, clear.body).toBe(200);
    expect(clear.json()).toMatchObject({ robot_id: "arm-stop", was_stopped: true });
    await t.app.inject({ method: "DELETE", url: "/v1/robots/arm-stop/safety-profile", headers: owner(t.customerId) });
    const back = await infer("arm-stop");
    expect(back.statusCode, back.body).toBe(200);
    const again = await t.app.inject({
      method: "POST",
      url: "/v1/robots/arm-stop/clear-stop",
      headers: owner(t.customerId),
    });
    expect(again.json()).toMatchObject({ was_stopped: false, stop: null });
  });

  it("a stop is per customer: another customer's robot with the same id keeps working", async () => {
    await putProfile("arm-shared-name", tight("emergency_stop"));
    await infer("arm-shared-name");
    expect((await infer("arm-shared-name")).statusCode).toBe(409);
    const other = await newKey(t);
    expect((await infer("arm-shared-name", {}, other.key)).statusCode).toBe(200);
  });

  it("remembers the robot's previous action, so acceleration is checked across requests", async () => {
    const policy = { low: "none", medium: "none", high: "none", critical: "none" };
    await putProfile("arm-acc", { max_linear_acceleration: 0.0001, max_angular_acceleration: 0.0001, policy });
    const first = await infer("arm-acc", { instruction: "first" });
    expect(first.json().safety.skipped.map((x: { check: string }) => x.check)).toContain("acceleration");
    const second = await infer("arm-acc", { instruction: "second" });
    const types = second.json().safety.violations.map((v: { type: string }) => v.type);
    expect(types).toContain("linear_acceleration");
    // Policy none: reported, action unchanged.
    expect(second.json().safety.status).toBe("pass");
    expect(second.json().action).toEqual(second.json().safety.raw_action);

    const metrics = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/vla_safety_violations_total\{type="linear_acceleration",severity="critical"\} [1-9]/);
    expect(metrics.body).toMatch(/vla_safety_evaluations_total\{status="clamped"\} [1-9]/);
  });

  it("/act validates X-Robot-Id and applies the robot's profile", async () => {
    const body = {
      image: encodeJsonNumpy(new Uint8Array(pattern(224, 224, 4)), [224, 224, 3], "|u1"),
      instruction: "pick",
      unnorm_key: "bridge_orig",
    };
    const bad = await t.app.inject({
      method: "POST",
      url: "/act",
      headers: { ...xKey(t.key), "x-robot-id": "no spaces" },
      payload: body,
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers["x-problem-code"]).toBe("invalid_request");
    await putProfile("arm-act", tight("reject"));
    const ok = await t.app.inject({
      method: "POST",
      url: "/act",
      headers: { ...xKey(t.key), "x-robot-id": "arm-act" },
      payload: body,
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const arr = Buffer.from(JSON.parse(ok.body).__numpy__, "base64");
    const action = Array.from(new Float64Array(arr.buffer, arr.byteOffset, 7));
    expect(action.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe("robots list, incidents and summary", () => {
  it("lists robots seen in inference with their last activity", async () => {
    await infer("arm-seen");
    await flush();
    const list = await t.app.inject({ method: "GET", url: "/v1/robots?limit=1000", headers: xKey(t.key) });
    expect(list.statusCode, list.body).toBe(200);
    const seen = list.json().data.find((r: { robot_id: string }) => r.robot_id === "arm-seen");
    expect(seen).toMatchObject({ has_custom_profile: false, emergency_stop: null });
    expect(seen.last_seen_at).toMatch(/^\d{4}-/);
    const page = await t.app.inject({ method: "GET", url: "/v1/robots?limit=2", headers: xKey(t.key) });
    expect(page.json().data).toHaveLength(2);
    const next = page.json().next_after as string;
    const page2 = await t.app.inject({ method: "GET", url: `/v1/robots?limit=2&after=${next}`, headers: xKey(t.key) });
    expect(page2.json().data[0].robot_id > next).toBe(true);
  });

  it("records incidents, filters and paginates them, and summarizes per customer", async () => {
    const c = await newKey(t);
    const own = { ...owner(c.customerId) };
    await putProfile("inc-a", tight("clamp"), own);
    await putProfile("inc-b", tight("clamp"), own);
    const ids: string[] = [];
    for (const robot of ["inc-a", "inc-a", "inc-b"]) {
      const r = await infer(robot, {}, c.key);
      ids.push(r.json().inference_id);
    }
    await flush();
    const all = await t.app.inject({ method: "GET", url: "/v1/safety/incidents", headers: xKey(c.key) });
    expect(all.statusCode, all.body).toBe(200);
    const rows = all.json().data;
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const r of rows) expect(ids).toContain(r.inference_id);
    expect(rows[0]).toMatchObject({ type: "linear_velocity", severity: "critical", action_taken: "clamped" });

    const filtered = await t.app.inject({
      method: "GET",
      url: "/v1/safety/incidents?robot_id=inc-b&severity=critical&type=linear_velocity",
      headers: xKey(c.key),
    });
    expect(filtered.json().data.every((r: { robot_id: string }) => r.robot_id === "inc-b")).toBe(true);
    expect(filtered.json().data.length).toBeGreaterThanOrEqual(1);

    const p1 = await t.app.inject({ method: "GET", url: "/v1/safety/incidents?limit=1", headers: xKey(c.key) });
    const cursor = p1.json().next_cursor as string;
    expect(cursor).toBeTruthy();
    const p2 = await t.app.inject({
      method: "GET",
      url: `/v1/safety/incidents?limit=1&cursor=${cursor}`,
      headers: xKey(c.key),
    });
    expect(p2.json().data[0].id).not.toBe(p1.json().data[0].id);

    const badFilter = await t.app.inject({
      method: "GET",
      url: "/v1/safety/incidents?severity=catastrophic",
      headers: xKey(c.key),
    });
    expect(badFilter.statusCode).toBe(400);
    const badCursor = await t.app.inject({
      method: "GET",
      url: "/v1/safety/incidents?cursor=bm9wZQ",
      headers: xKey(c.key),
    });
    expect(badCursor.statusCode).toBe(400);

    const summary = await t.app.inject({
      method: "GET",
      url: `/v1/safety/summary?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z`,
      headers: xKey(c.key),
    });
    expect(summary.statusCode, summary.body).toBe(200);
    const s = summary.json();
    expect(s.total).toBe(rows.length);
    expect(s.by_robot["inc-a"]).toBeGreaterThanOrEqual(2);
    expect(s.by_robot["inc-b"]).toBeGreaterThanOrEqual(1);
    expect(s.by_severity.critical).toBe(s.total);

    // Another customer sees none of it.
    const other = await newKey(t);
    const none = await t.app.inject({ method: "GET", url: "/v1/safety/incidents", headers: xKey(other.key) });
    expect(none.json().data).toEqual([]);
    const backwards = await t.app.inject({
      method: "GET",
      url: "/v1/safety/summary?from=2100-01-01T00:00:00Z&to=2000-01-01T00:00:00Z",
      headers: xKey(c.key),
    });
    expect(backwards.statusCode).toBe(400);
    expect(backwards.json()).toMatchObject({ code: "invalid_request" });
    const notADate = await t.app.inject({
      method: "GET",
      url: "/v1/safety/summary?from=yesterday",
      headers: xKey(c.key),
    });
    expect(notADate.statusCode).toBe(400);
    const zero = await t.app.inject({ method: "GET", url: "/v1/safety/summary", headers: xKey(other.key) });
    expect(zero.json()).toMatchObject({ total: 0, by_type: {}, by_robot: {} });
  });
  it("from/to outside the years 0001-9999 answer 400 invalid_request, not a 500 from the database", async () => {
    const c = await newKey(t);
    for (const url of [
      "/v1/safety/summary?from=0000-01-01T00:00:00Z",
      "/v1/safety/summary?from=0000-01-01T00:00:00Z&to=0000-06-01T00:00:00Z",
      "/v1/safety/incidents?from=0000-01-01T00:00:00Z",
      "/v1/safety/incidents?to=0000-01-01T00:00:00Z",
    ]) {
      const res = await t.app.inject({ method: "GET", url, headers: xKey(c.key) });
      expect(res.statusCode, `${url} ${res.body}`).toBe(400);
      expect(res.json()).toMatchObject({ code: "invalid_request" });
    }
  });
});

describe.skipIf(!hasRedis)("two instances sharing one Redis", () => {
  it("an emergency stop, its clearing and a profile change reach the other instance", async () => {
    const prefix = `t:${randomBytes(6).toString("hex")}:`;
    const clock = new FakeClock();
    const env = { MODELS_WARM_UP: "false" };
    const a = await buildLimitsApp({ redisKeyPrefix: prefix, clock, env });
    const b = await buildLimitsApp({ redisKeyPrefix: prefix, clock, env, database: a.database });
    try {
      const c = await seedCustomer(a.database, { tier: "enterprise", perMinute: 1_000_000 });
      const { key } = await seedKey(a.database, c);
      const call = (app: typeof a.app, robot: string) =>
        app.inject({
          method: "POST",
          url: "/v1/inference",
          headers: xKey(key),
          payload: { image: img, instruction: "pick", robot_id: robot, unnorm_key: "bridge_orig" },
        });
      // B caches the robot's (empty) profile first; A's change must still reach it.
      expect((await call(b.app, "arm-x")).json().safety.status).toBe("pass");
      const put = await a.app.inject({
        method: "PUT",
        url: "/v1/robots/arm-x/safety-profile",
        headers: owner(c),
        payload: tight("emergency_stop"),
      });
      expect(put.statusCode, put.body).toBe(200);
      let status = "";
      for (let i = 0; i < 50 && status !== "emergency_stop"; i++) {
        await new Promise((r) => setTimeout(r, 20));
        status = (await call(b.app, "arm-x")).json().safety?.status;
      }
      expect(status).toBe("emergency_stop");
      // Stopped on B: A refuses.
      expect((await call(a.app, "arm-x")).statusCode).toBe(409);
      await a.app.inject({ method: "DELETE", url: "/v1/robots/arm-x/safety-profile", headers: owner(c) });
      const clear = await a.app.inject({ method: "POST", url: "/v1/robots/arm-x/clear-stop", headers: owner(c) });
      expect(clear.json().was_stopped).toBe(true);
      let code = 0;
      for (let i = 0; i < 50 && code !== 200; i++) {
        await new Promise((r) => setTimeout(r, 20));
        code = (await call(b.app, "arm-x")).statusCode;
      }
      expect(code).toBe(200);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
