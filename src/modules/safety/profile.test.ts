import { Compile } from "typebox/compile";
import { describe, expect, it } from "vitest";
import {
  datasetGripperRange,
  defaultProfile,
  EMBODIMENT_DEFAULTS,
  EXAMPLE_PROFILE,
  GLOBAL_DEFAULT_PROFILE,
  modelDefaultProfile,
  resolveProfile,
  SafetyProfileInputSchema,
} from "./profile.ts";

const paths = (input: unknown) => {
  const r = resolveProfile(input);
  return r.ok ? [] : r.errors.map((e) => e.path);
};

describe("resolveProfile", () => {
  it("fills every default from an empty object", () => {
    const r = resolveProfile({});
    expect(r.ok && r.profile).toEqual(GLOBAL_DEFAULT_PROFILE);
  });
  it("merges partial workspace and policy with the base", () => {
    const r = resolveProfile({ workspace: { z: [0.1, 0.9] }, policy: { high: "emergency_stop" } });
    if (!r.ok) throw new Error("invalid");
    expect(r.profile.workspace).toEqual({ x: [-0.5, 0.5], y: [-0.5, 0.5], z: [0.1, 0.9] });
    expect(r.profile.policy).toEqual({
      low: "clamp",
      medium: "clamp",
      high: "emergency_stop",
      critical: "emergency_stop",
    });
  });
  it("accepts the issue's example", () => {
    const example = EXAMPLE_PROFILE;
    const r = resolveProfile(example);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.profile.keep_out_zones).toHaveLength(2);
  });
  it.each([
    [{ control_hz: 0 }, ["/control_hz"]],
    [{ control_hz: -5 }, ["/control_hz"]],
    [{ control_hz: 5000 }, ["/control_hz"]],
    [{ control_hz: "5" }, ["/control_hz"]],
    [{ max_linear_velocity: 0 }, ["/max_linear_velocity"]],
    [{ max_angular_acceleration: Number.POSITIVE_INFINITY }, ["/max_angular_acceleration"]],
    [{ workspace: { x: [0.5, -0.5] } }, ["/workspace/x"]],
    [{ workspace: { y: [0, 0] } }, ["/workspace/y"]],
    [{ workspace: { z: [0, Number.NaN] } }, ["/workspace/z/1"]],
    [{ workspace: { x: [0] } }, ["/workspace/x"]],
    [{ workspace: { w: [0, 1] } }, ["/workspace/w"]],
    [{ gripper: [1, 0] }, ["/gripper"]],
    [{ zone_margin: -0.01 }, ["/zone_margin"]],
    [{ keep_out_zones: [{ type: "box", min: [0, 0, 0], max: [1, 0, 1] }] }, ["/keep_out_zones/0/max/1"]],
    [{ keep_out_zones: [{ type: "sphere", center: [0, 0], radius: 0.1 }] }, ["/keep_out_zones/0/center"]],
    [{ keep_out_zones: [{ type: "sphere", center: [0, 0, 0], radius: 0 }] }, ["/keep_out_zones/0/radius"]],
    [{ keep_out_zones: [{ type: "cylinder" }] }, ["/keep_out_zones/0/type"]],
    [{ keep_out_zones: {} }, ["/keep_out_zones"]],
    [{ policy: { low: "explode" } }, ["/policy/low"]],
    [{ policy: { severe: "reject" } }, ["/policy/severe"]],
    [{ policy: { high: "clamp", critical: "none" } }, ["/policy/critical"]],
    [{ action_space: "joint" }, ["/action_space"]],
    [{ colour: "red" }, ["/colour"]],
    [{ control_hz: 0, gripper: [2, 1] }, ["/control_hz", "/gripper"]],
  ])("%j -> errors at %j", (input, expected) => {
    expect(paths(input)).toEqual(expected);
  });
  it("errors have the FieldError shape with a prefix", () => {
    const r = resolveProfile({ control_hz: 0 }, GLOBAL_DEFAULT_PROFILE, "/safety_profile");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toEqual({ in: "body", path: "/safety_profile/control_hz", message: "must be > 0" });
  });
  it("rejects a non-object", () => {
    expect(paths([1, 2])).toEqual([""]);
  });
});

describe("defaults per embodiment", () => {
  it("by embodiment name and by unnorm key", () => {
    expect(defaultProfile("widowx_bridge").control_hz).toBe(5);
    expect(defaultProfile("bridge_orig").control_hz).toBe(5);
    expect(defaultProfile("franka").control_hz).toBe(15);
    expect(defaultProfile("droid").control_hz).toBe(15);
    expect(defaultProfile("google_robot").control_hz).toBe(3);
    expect(defaultProfile("unknown")).toBe(GLOBAL_DEFAULT_PROFILE);
    expect(defaultProfile()).toBe(GLOBAL_DEFAULT_PROFILE);
  });
  it("every built-in default is valid", () => {
    for (const name of Object.keys(EMBODIMENT_DEFAULTS)) expect(() => defaultProfile(name)).not.toThrow();
  });
});

describe("TypeBox schema", () => {
  const check = Compile(SafetyProfileInputSchema);
  it("accepts the example and partial profiles, refuses wrong types", () => {
    expect(check.Check(EXAMPLE_PROFILE)).toBe(true);
    expect(check.Check({ control_hz: 10 })).toBe(true);
    expect(check.Check({ control_hz: -1 })).toBe(false);
    expect(check.Check({ workspace: { x: [0] } })).toBe(false);
    expect(check.Check({ policy: { low: "explode" } })).toBe(false);
  });
});

describe("wire schemas", () => {
  it("an evaluator result (without the safe action) matches SafetyResultSchema", async () => {
    const { evaluateSync } = await import("./evaluator.ts");
    const { RobotStateSchema, SafetyResultSchema } = await import("./safety.schemas.ts");
    const state = { ee_position: [0.45, 0, 0.3], gripper: 1 };
    expect(Compile(RobotStateSchema).Check(state)).toBe(true);
    expect(Compile(RobotStateSchema).Check({ ee_position: [0, 0] })).toBe(false);
    const r = evaluateSync({ action: [0.12, 0, 0, 0, 0, 0, 1], profile: GLOBAL_DEFAULT_PROFILE, robotState: state });
    const { action: _safe, ...wire } = r;
    expect(Compile(SafetyResultSchema).Check(wire)).toBe(true);
  });
});

describe("the gripper range of a model's statistics", () => {
  const seven = (gripper: { min?: number; max?: number; q01: number; q99: number }) => ({
    q01: [-1, -1, -1, -1, -1, -1, gripper.q01],
    q99: [1, 1, 1, 1, 1, 1, gripper.q99],
    ...(gripper.min === undefined ? {} : { min: [-2, -2, -2, -2, -2, -2, gripper.min] }),
    ...(gripper.max === undefined ? {} : { max: [2, 2, 2, 2, 2, 2, gripper.max] }),
    mask: [true, true, true, true, true, true, false],
  });

  it("is the dataset's own gripper range: OpenVLA's mask-false gripper is in RLDS [0, 1], not [-1, 1]", () => {
    expect(datasetGripperRange(seven({ min: 0, max: 1, q01: 0, q99: 1 }))).toEqual([0, 1]);
    expect(datasetGripperRange(seven({ q01: 0.05, q99: 0.95 }))).toEqual([0.05, 0.95]);
    expect(datasetGripperRange(seven({ min: -1, max: 1, q01: -1, q99: 1 }))).toEqual([-1, 1]);
  });

  it("is undefined when the statistics cannot say", () => {
    expect(datasetGripperRange(undefined)).toBeUndefined();
    expect(datasetGripperRange(seven({ min: 1, max: 1, q01: 1, q99: 1 }))).toBeUndefined();
    expect(datasetGripperRange({ q01: [0, 0], q99: [1, 1] })).toBeUndefined();
  });

  it("replaces the embodiment default's gripper and nothing else", () => {
    const p = modelDefaultProfile("droid", seven({ min: 0.1, max: 0.9, q01: 0.1, q99: 0.9 }));
    expect(p).toEqual({ ...defaultProfile("droid"), gripper: [0.1, 0.9] });
    expect(modelDefaultProfile("droid", undefined)).toEqual(defaultProfile("droid"));
  });
});
