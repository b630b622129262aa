import { type Static, Type } from "typebox";
import type { FieldError } from "../../platform/errors.ts";
import type { ArrayStats } from "../models/dataset-statistics.ts";

/**
 * A robot safety profile. Units: metres, radians, seconds, in the robot base frame.
 * Actions are `delta_ee` (OpenVLA): [dx, dy, dz, droll, dpitch, dyaw, gripper], where the
 * six deltas are per control step and the gripper is an absolute command in the gripper range.
 */
export type Severity = "low" | "medium" | "high" | "critical";
export const SEVERITIES: readonly Severity[] = ["low", "medium", "high", "critical"];
export type PolicyAction = "none" | "clamp" | "reject" | "emergency_stop";
export const POLICY_ACTIONS: readonly PolicyAction[] = ["none", "clamp", "reject", "emergency_stop"];

export type Vec3 = readonly [number, number, number];
export type Range = readonly [number, number];

export interface BoxZone {
  readonly type: "box";
  readonly min: Vec3;
  readonly max: Vec3;
}
export interface SphereZone {
  readonly type: "sphere";
  readonly center: Vec3;
  readonly radius: number;
}
export type KeepOutZone = BoxZone | SphereZone;

/** A complete (defaults filled in) and validated profile: what the evaluator takes. */
export interface SafetyProfile {
  readonly action_space: "delta_ee";
  readonly control_hz: number;
  readonly workspace: { readonly x: Range; readonly y: Range; readonly z: Range };
  readonly max_linear_velocity: number;
  readonly max_angular_velocity: number;
  readonly max_linear_acceleration: number;
  readonly max_angular_acceleration: number;
  readonly gripper: Range;
  readonly keep_out_zones: readonly KeepOutZone[];
  readonly zone_margin: number;
  readonly policy: Readonly<Record<Severity, PolicyAction>>;
}

export const ACTION_DIM = 7;
export const MAX_KEEP_OUT_ZONES = 32;
const MAX_CONTROL_HZ = 1000;

const num = (description: string) => Type.Number({ description });
const RangeSchema = (what: string, example: [number, number]) =>
  Type.Tuple([num(`${what} minimum`), num(`${what} maximum`)], {
    description: `[min, max] of ${what}; min < max.`,
    examples: [example],
  });
const Vec3Schema = (what: string) =>
  Type.Tuple([num("x (m)"), num("y (m)"), num("z (m)")], { description: `${what} [x, y, z] in metres.` });
const PolicyActionSchema = Type.Union(
  [Type.Literal("none"), Type.Literal("clamp"), Type.Literal("reject"), Type.Literal("emergency_stop")],
  {
    description:
      "none: pass and report; clamp: bring within limits; reject: zero motion; emergency_stop: zero motion and stop the robot until cleared.",
  },
);

export const KeepOutZoneSchema = Type.Union([
  Type.Object(
    { type: Type.Literal("box"), min: Vec3Schema("Lower corner"), max: Vec3Schema("Upper corner") },
    { additionalProperties: false, description: "Axis-aligned box; min < max on every axis." },
  ),
  Type.Object(
    {
      type: Type.Literal("sphere"),
      center: Vec3Schema("Centre"),
      radius: Type.Number({ exclusiveMinimum: 0, description: "Radius in metres (> 0)." }),
    },
    { additionalProperties: false },
  ),
]);

/** The example profile (also the schema example). */
export const EXAMPLE_PROFILE = {
  control_hz: 5,
  workspace: { x: [-0.5, 0.5], y: [-0.5, 0.5], z: [0.0, 0.6] },
  max_linear_velocity: 0.5,
  max_angular_velocity: 1.5,
  max_linear_acceleration: 2.0,
  max_angular_acceleration: 6.0,
  gripper: [0, 1],
  keep_out_zones: [
    { type: "box", min: [0.3, -0.1, 0.0], max: [0.5, 0.1, 0.2] },
    { type: "sphere", center: [0.0, 0.3, 0.3], radius: 0.1 },
  ],
  zone_margin: 0.02,
  policy: { low: "clamp", medium: "clamp", high: "reject", critical: "emergency_stop" },
};

/** The profile as the API takes it: every field optional, defaults filled in from the embodiment or global default. */
export const SafetyProfileInputSchema = Type.Object(
  {
    action_space: Type.Optional(
      Type.Literal("delta_ee", {
        description: "Action semantics; only delta_ee (OpenVLA: [dx,dy,dz,droll,dpitch,dyaw,gripper]) for now.",
      }),
    ),
    control_hz: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: MAX_CONTROL_HZ,
        description: "Control frequency in Hz: one action per 1/control_hz s.",
      }),
    ),
    workspace: Type.Optional(
      Type.Object(
        {
          x: Type.Optional(RangeSchema("x (m)", [-0.5, 0.5])),
          y: Type.Optional(RangeSchema("y (m)", [-0.5, 0.5])),
          z: Type.Optional(RangeSchema("z (m)", [0, 0.6])),
        },
        { additionalProperties: false, description: "Box the end effector must stay in (robot base frame)." },
      ),
    ),
    max_linear_velocity: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "m/s." })),
    max_angular_velocity: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "rad/s." })),
    max_linear_acceleration: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "m/s²." })),
    max_angular_acceleration: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "rad/s²." })),
    gripper: Type.Optional(RangeSchema("gripper command", [0, 1])),
    keep_out_zones: Type.Optional(
      Type.Array(KeepOutZoneSchema, {
        maxItems: MAX_KEEP_OUT_ZONES,
        description: "Regions the end effector must not enter.",
      }),
    ),
    zone_margin: Type.Optional(
      Type.Number({
        minimum: 0,
        description: "Safety margin around keep-out zones in metres; inside it is a high-severity violation.",
      }),
    ),
    policy: Type.Optional(
      Type.Object(
        {
          low: Type.Optional(PolicyActionSchema),
          medium: Type.Optional(PolicyActionSchema),
          high: Type.Optional(PolicyActionSchema),
          critical: Type.Optional(PolicyActionSchema),
        },
        {
          additionalProperties: false,
          description: "Action taken for the worst severity found; must not get less strict as severity rises.",
        },
      ),
    ),
  },
  {
    additionalProperties: false,
    examples: [EXAMPLE_PROFILE],
  },
);
export type SafetyProfileInput = Static<typeof SafetyProfileInputSchema>;

/**
 * The global default: the example profile. Conservative for table-top arms
 * (0.5 m/s is well below the ~1 m/s+ tool speeds of common research arms).
 */
export const GLOBAL_DEFAULT_PROFILE: SafetyProfile = Object.freeze({
  action_space: "delta_ee",
  control_hz: 5,
  workspace: { x: [-0.5, 0.5], y: [-0.5, 0.5], z: [0.0, 0.6] },
  max_linear_velocity: 0.5,
  max_angular_velocity: 1.5,
  max_linear_acceleration: 2.0,
  max_angular_acceleration: 6.0,
  gripper: [0, 1],
  keep_out_zones: [],
  zone_margin: 0.02,
  policy: { low: "clamp", medium: "clamp", high: "reject", critical: "emergency_stop" },
} satisfies SafetyProfile);

/**
 * Per-embodiment overrides of the global default. Sources / assumptions:
 * - widowx_bridge: BridgeData V2 was recorded at 5 Hz (Walke et al. 2023); OpenVLA's `bridge_orig` actions.
 *   WidowX 250 reach ~0.65 m, so the default box is kept.
 * - franka: DROID is recorded at 15 Hz (Khazatsky et al. 2024). Franka's Cartesian limits are 1.7 m/s and
 *   2.5 rad/s; we keep 1.0 m/s and 2.5 rad/s with accelerations well under the 13 m/s² / 25 rad/s² hardware limits.
 * - google_robot: RT-1 runs at 3 Hz (Brohan et al. 2022; `fractal20220817_data`).
 * These are starting points, not certified limits: customers set their own per robot.
 */
export const EMBODIMENT_DEFAULTS: Readonly<Record<string, SafetyProfileInput>> = Object.freeze({
  widowx_bridge: { control_hz: 5 },
  franka: {
    control_hz: 15,
    workspace: { x: [0.2, 0.8], y: [-0.5, 0.5], z: [0.0, 0.8] },
    max_linear_velocity: 1.0,
    max_angular_velocity: 2.5,
    max_linear_acceleration: 5.0,
    max_angular_acceleration: 12.0,
  },
  google_robot: { control_hz: 3, workspace: { x: [0.2, 1.0], y: [-0.6, 0.6], z: [0.0, 1.2] } },
});

/** Unnorm keys (dataset names) of common OpenVLA checkpoints mapped to an embodiment. */
export const UNNORM_KEY_EMBODIMENT: Readonly<Record<string, string>> = Object.freeze({
  bridge_orig: "widowx_bridge",
  bridge_dataset: "widowx_bridge",
  droid: "franka",
  fractal20220817_data: "google_robot",
});

export type ProfileResult =
  | { readonly ok: true; readonly profile: SafetyProfile }
  | { readonly ok: false; readonly errors: readonly FieldError[] };

/** The default for an embodiment (or unnorm key), else the global default. */
export function defaultProfile(embodimentOrUnnormKey?: string): SafetyProfile {
  if (embodimentOrUnnormKey === undefined) return GLOBAL_DEFAULT_PROFILE;
  const name = UNNORM_KEY_EMBODIMENT[embodimentOrUnnormKey] ?? embodimentOrUnnormKey;
  const over = EMBODIMENT_DEFAULTS[name];
  if (over === undefined) return GLOBAL_DEFAULT_PROFILE;
  const r = resolveProfile(over, GLOBAL_DEFAULT_PROFILE);
  if (!r.ok) throw new Error(`built-in profile ${name} is invalid: ${JSON.stringify(r.errors)}`);
  return r.profile;
}

/** Index of the gripper in a `delta_ee` action. */
export const GRIPPER_INDEX = 6;

/**
 * The gripper range of a model's training data for one unnorm key: [min, max] of the gripper
 * dimension of the action statistics ([q01, q99] when min/max are absent); undefined when the
 * statistics are not 7-D or give no proper range.
 *
 * OpenVLA leaves the gripper out of normalization (`mask` false): it was trained on, and
 * un-normalization passes through, the dataset's own gripper values, which follow the RLDS
 * convention 0 = closed, 1 = open (`bridge_orig`: min 0, max 1). The action tokens span
 * [-1, 1], so a decoded gripper can be negative, but that is outside what the model was
 * trained to send and what the robot takes: it is a violation, not an ordinary output.
 */
export function datasetGripperRange(action: ArrayStats | undefined): Range | undefined {
  if (action === undefined || action.q01.length !== ACTION_DIM) return undefined;
  const lo = action.min?.[GRIPPER_INDEX] ?? action.q01[GRIPPER_INDEX];
  const hi = action.max?.[GRIPPER_INDEX] ?? action.q99[GRIPPER_INDEX];
  if (lo === undefined || hi === undefined || !Number.isFinite(lo) || !Number.isFinite(hi) || !(lo < hi)) {
    return undefined;
  }
  return [lo, hi];
}

/**
 * The defaults a model's actions are judged against for an unnorm key: the default of the
 * key's embodiment, with the gripper range of the model's statistics for that key. The one
 * function behind both the gate (`SafetyService.profileFor`) and the profile view
 * (`GET /v1/robots/{id}/safety-profile`), so the view shows what is applied.
 */
export function modelDefaultProfile(unnormKey: string | undefined, action: ArrayStats | undefined): SafetyProfile {
  const base = defaultProfile(unnormKey);
  const gripper = datasetGripperRange(action);
  return gripper === undefined ? base : { ...base, gripper };
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Validate an API profile (unknown JSON) and fill in defaults from `base`. Errors carry JSON Pointer
 * paths under `pathPrefix` (e.g. "" for a profile body, "/safety_profile" when nested).
 */
export function resolveProfile(
  input: unknown,
  base: SafetyProfile = GLOBAL_DEFAULT_PROFILE,
  pathPrefix = "",
): ProfileResult {
  const errs: FieldError[] = [];
  const err = (path: string, message: string) => errs.push({ in: "body", path: `${pathPrefix}${path}`, message });
  if (input === undefined || input === null) return { ok: true, profile: base };
  if (!isObj(input)) {
    err("", "must be an object");
    return { ok: false, errors: errs };
  }
  const known = new Set([
    "action_space",
    "control_hz",
    "workspace",
    "max_linear_velocity",
    "max_angular_velocity",
    "max_linear_acceleration",
    "max_angular_acceleration",
    "gripper",
    "keep_out_zones",
    "zone_margin",
    "policy",
  ]);
  for (const k of Object.keys(input)) if (!known.has(k)) err(`/${k}`, "unknown field");

  const finite = (v: unknown, path: string): v is number => {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      err(path, "must be a finite number");
      return false;
    }
    return true;
  };
  const positive = (key: string, fallback: number, max = Number.POSITIVE_INFINITY): number => {
    const v = input[key];
    if (v === undefined) return fallback;
    if (!finite(v, `/${key}`)) return fallback;
    if (v <= 0) err(`/${key}`, "must be > 0");
    else if (v > max) err(`/${key}`, `must be <= ${max}`);
    return v;
  };
  const range = (v: unknown, path: string, fallback: Range): Range => {
    if (v === undefined) return fallback;
    if (!Array.isArray(v) || v.length !== 2) {
      err(path, "must be [min, max]");
      return fallback;
    }
    const okA = finite(v[0], `${path}/0`);
    const okB = finite(v[1], `${path}/1`);
    if (!okA || !okB) return fallback;
    if (!(v[0] < v[1])) err(path, "min must be < max");
    return [v[0], v[1]];
  };
  const vec3 = (v: unknown, path: string): Vec3 | undefined => {
    if (!Array.isArray(v) || v.length !== 3) {
      err(path, "must be [x, y, z]");
      return undefined;
    }
    let ok = true;
    for (let i = 0; i < 3; i++) ok = finite(v[i], `${path}/${i}`) && ok;
    return ok ? [v[0], v[1], v[2]] : undefined;
  };

  if (input.action_space !== undefined && input.action_space !== "delta_ee") err("/action_space", 'must be "delta_ee"');
  const control_hz = positive("control_hz", base.control_hz, MAX_CONTROL_HZ);

  let workspace = base.workspace;
  if (input.workspace !== undefined) {
    if (!isObj(input.workspace)) err("/workspace", "must be an object with x, y, z ranges");
    else {
      for (const k of Object.keys(input.workspace))
        if (k !== "x" && k !== "y" && k !== "z") err(`/workspace/${k}`, "unknown field");
      workspace = {
        x: range(input.workspace.x, "/workspace/x", base.workspace.x),
        y: range(input.workspace.y, "/workspace/y", base.workspace.y),
        z: range(input.workspace.z, "/workspace/z", base.workspace.z),
      };
    }
  }
  const max_linear_velocity = positive("max_linear_velocity", base.max_linear_velocity);
  const max_angular_velocity = positive("max_angular_velocity", base.max_angular_velocity);
  const max_linear_acceleration = positive("max_linear_acceleration", base.max_linear_acceleration);
  const max_angular_acceleration = positive("max_angular_acceleration", base.max_angular_acceleration);
  const gripper = range(input.gripper, "/gripper", base.gripper);

  let zone_margin = base.zone_margin;
  if (input.zone_margin !== undefined && finite(input.zone_margin, "/zone_margin")) {
    if (input.zone_margin < 0) err("/zone_margin", "must be >= 0");
    zone_margin = input.zone_margin;
  }

  let keep_out_zones = base.keep_out_zones;
  if (input.keep_out_zones !== undefined) {
    const zs = input.keep_out_zones;
    if (!Array.isArray(zs)) err("/keep_out_zones", "must be an array");
    else if (zs.length > MAX_KEEP_OUT_ZONES) err("/keep_out_zones", `at most ${MAX_KEEP_OUT_ZONES} zones`);
    else {
      const out: KeepOutZone[] = [];
      zs.forEach((z: unknown, i: number) => {
        const p = `/keep_out_zones/${i}`;
        if (!isObj(z)) {
          err(p, "must be an object");
          return;
        }
        if (z.type === "box") {
          for (const k of Object.keys(z))
            if (k !== "type" && k !== "min" && k !== "max") err(`${p}/${k}`, "unknown field");
          const min = vec3(z.min, `${p}/min`);
          const max = vec3(z.max, `${p}/max`);
          if (min === undefined || max === undefined) return;
          for (let a = 0; a < 3; a++)
            if (!((min[a] as number) < (max[a] as number))) err(`${p}/max/${a}`, "must be > min on every axis");
          out.push({ type: "box", min, max });
        } else if (z.type === "sphere") {
          for (const k of Object.keys(z))
            if (k !== "type" && k !== "center" && k !== "radius") err(`${p}/${k}`, "unknown field");
          const center = vec3(z.center, `${p}/center`);
          if (!finite(z.radius, `${p}/radius`)) return;
          if (z.radius <= 0) {
            err(`${p}/radius`, "must be > 0");
            return;
          }
          if (center !== undefined) out.push({ type: "sphere", center, radius: z.radius });
        } else err(`${p}/type`, 'must be "box" or "sphere"');
      });
      keep_out_zones = out;
    }
  }

  let policy = base.policy;
  if (input.policy !== undefined) {
    if (!isObj(input.policy)) err("/policy", "must be an object");
    else {
      const merged: Record<Severity, PolicyAction> = { ...base.policy };
      for (const k of Object.keys(input.policy)) {
        if (!(SEVERITIES as readonly string[]).includes(k)) {
          err(`/policy/${k}`, "unknown severity; use low, medium, high, critical");
          continue;
        }
        const v = input.policy[k];
        if (typeof v !== "string" || !(POLICY_ACTIONS as readonly string[]).includes(v))
          err(`/policy/${k}`, `must be one of ${POLICY_ACTIONS.join(", ")}`);
        else merged[k as Severity] = v as PolicyAction;
      }
      for (let i = 1; i < SEVERITIES.length; i++) {
        const lo = SEVERITIES[i - 1] as Severity;
        const hi = SEVERITIES[i] as Severity;
        if (POLICY_ACTIONS.indexOf(merged[hi]) < POLICY_ACTIONS.indexOf(merged[lo]))
          err(`/policy/${hi}`, `must be at least as strict as the ${lo} policy (${merged[lo]})`);
      }
      policy = merged;
    }
  }

  if (errs.length > 0) return { ok: false, errors: errs };
  return {
    ok: true,
    profile: {
      action_space: "delta_ee",
      control_hz,
      workspace,
      max_linear_velocity,
      max_angular_velocity,
      max_linear_acceleration,
      max_angular_acceleration,
      gripper,
      keep_out_zones,
      zone_margin,
      policy,
    },
  };
}
