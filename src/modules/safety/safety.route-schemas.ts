import { Type } from "typebox";
import { ROBOT_ID_PATTERN } from "../inference/inference.schemas.ts";
import { EXAMPLE_PROFILE, SafetyProfileInputSchema, SEVERITIES } from "./profile.ts";
import { VIOLATION_TYPES } from "./types.ts";

/** Wire schemas of the robot and incident routes. */

const robotId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: ROBOT_ID_PATTERN,
  description: "The robot's id within your customer (as sent in inference requests).",
  examples: ["arm-3"],
});

export const RobotIdParams = Type.Object({ robot_id: robotId });

const listPattern = (values: readonly string[]) => `^(${values.join("|")})(,(${values.join("|")}))*$`;

export const RobotListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: "Page size (max 1000)." }),
    after: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "The last robot_id of the previous page." }),
    ),
  },
  { additionalProperties: false },
);

const StopSchema = Type.Union(
  [
    Type.Object({
      at: Type.String({ description: "When the robot was stopped." }),
      reason: Type.String({ description: "The violation that stopped it." }),
      inference_id: Type.Union([Type.String(), Type.Null()]),
    }),
    Type.Null(),
  ],
  { description: "The emergency stop in force, or null." },
);

const nullableTime = Type.Union([Type.String({ format: "date-time" }), Type.Null()]);

export const RobotListSchema = Type.Object(
  {
    data: Type.Array(
      Type.Object({
        robot_id: Type.String(),
        has_custom_profile: Type.Boolean(),
        last_seen_at: Type.Union([nullableTime], { description: "Last inference request naming the robot." }),
        created_at: nullableTime,
        updated_at: nullableTime,
        emergency_stop: StopSchema,
      }),
    ),
    next_after: Type.Union([Type.String(), Type.Null()], {
      description: "Pass as `after` for the next page; null at the end.",
    }),
  },
  {
    examples: [
      {
        data: [
          {
            robot_id: "arm-3",
            has_custom_profile: true,
            last_seen_at: "2026-11-26T10:00:00.000Z",
            created_at: "2026-11-20T09:00:00.000Z",
            updated_at: "2026-11-26T10:00:00.000Z",
            emergency_stop: null,
          },
        ],
        next_after: null,
      },
    ],
  },
);

export const ProfileQuery = Type.Object(
  {
    unnorm_key: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description:
          "Show the profile as it applies to actions un-normalized with this key (its embodiment's defaults); with " +
          "no model, the default model's if it has the key, else the first model's that has it.",
      }),
    ),
    model: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description:
          "Show the profile as it applies to this model's actions (its statistics give the gripper range); with no " +
          "unnorm_key, the model's default key, as in inference. Your own registered model (POST /v1/models) is shown " +
          "as the gate judges it: its statistics are not used for the gripper range.",
      }),
    ),
  },
  { additionalProperties: false },
);

export const ProfileBodySchema = SafetyProfileInputSchema;

const ZoneOut = Type.Union([
  Type.Object({ type: Type.Literal("box"), min: Type.Array(Type.Number()), max: Type.Array(Type.Number()) }),
  Type.Object({ type: Type.Literal("sphere"), center: Type.Array(Type.Number()), radius: Type.Number() }),
]);
const RangeOut = Type.Array(Type.Number(), { minItems: 2, maxItems: 2 });
const PolicyValue = Type.String({ description: "none, clamp, reject or emergency_stop." });

export const EffectiveProfileSchema = Type.Object(
  {
    action_space: Type.String(),
    control_hz: Type.Number(),
    workspace: Type.Object({ x: RangeOut, y: RangeOut, z: RangeOut }),
    max_linear_velocity: Type.Number(),
    max_angular_velocity: Type.Number(),
    max_linear_acceleration: Type.Number(),
    max_angular_acceleration: Type.Number(),
    gripper: RangeOut,
    keep_out_zones: Type.Array(ZoneOut),
    zone_margin: Type.Number(),
    policy: Type.Object({ low: PolicyValue, medium: PolicyValue, high: PolicyValue, critical: PolicyValue }),
  },
  { description: "Every field filled in." },
);

export const RobotProfileResponseSchema = Type.Object(
  {
    robot_id: Type.String(),
    source: Type.Union([Type.Literal("custom"), Type.Literal("default")], {
      description: "custom: a profile was PUT for this robot; default: defaults only.",
    }),
    defaults: Type.String({
      description: "Which defaults fill the gaps: global, widowx_bridge, franka or google_robot.",
    }),
    applies_to: Type.Object(
      {
        model: Type.Union([Type.String(), Type.Null()]),
        unnorm_key: Type.Union([Type.String(), Type.Null()]),
      },
      {
        description:
          "The model and unnorm key the effective profile is shown for, resolved as an inference request resolves " +
          "them; the profile is exactly what the safety gate applies to that model's actions. Nulls: no model " +
          "applies (PUT's answer, or an unnorm key no model has).",
      },
    ),
    profile: EffectiveProfileSchema,
    stored: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], {
      description: "The profile as it was PUT, or null.",
    }),
    emergency_stop: StopSchema,
  },
  {
    examples: [
      {
        robot_id: "arm-3",
        source: "custom",
        defaults: "widowx_bridge",
        applies_to: { model: "demo-vla-tiny", unnorm_key: "bridge_orig" },
        profile: { action_space: "delta_ee", ...EXAMPLE_PROFILE },
        stored: EXAMPLE_PROFILE,
        emergency_stop: null,
      },
    ],
  },
);

export const ClearStopResponseSchema = Type.Object(
  {
    robot_id: Type.String(),
    was_stopped: Type.Boolean(),
    stop: StopSchema,
  },
  {
    examples: [
      {
        robot_id: "arm-3",
        was_stopped: true,
        stop: {
          at: "2026-11-26T10:00:00.000Z",
          reason: "predicted position is 0.012 m inside keep-out zone 0",
          inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
        },
      },
    ],
  },
);

const timeRange = {
  from: Type.Optional(Type.String({ format: "date-time", description: "Inclusive lower bound." })),
  to: Type.Optional(Type.String({ format: "date-time", description: "Exclusive upper bound." })),
};

export const IncidentQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50, description: "Page size (max 500)." }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: "Opaque `next_cursor` of the previous page." })),
    robot_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    severity: Type.Optional(
      Type.String({
        pattern: listPattern(SEVERITIES),
        description: "Comma-separated: low, medium, high, critical.",
        examples: ["high,critical"],
      }),
    ),
    type: Type.Optional(
      Type.String({
        pattern: listPattern(VIOLATION_TYPES),
        description: `Comma-separated violation types: ${VIOLATION_TYPES.join(", ")}.`,
        examples: ["workspace,collision"],
      }),
    ),
    ...timeRange,
  },
  { additionalProperties: false },
);

export const IncidentPageSchema = Type.Object(
  {
    data: Type.Array(
      Type.Object({
        id: Type.String({ format: "uuid" }),
        at: Type.String({ format: "date-time" }),
        robot_id: Type.String({ description: "`(unidentified)` for requests that named no robot." }),
        inference_id: Type.Union([Type.String(), Type.Null()]),
        type: Type.String(),
        severity: Type.String(),
        action_taken: Type.String({ description: "none, clamped, rejected or emergency_stop." }),
        measured: Type.Union([Type.Number(), Type.Null()]),
        limit: Type.Union([Type.Number(), Type.Null()]),
        step: Type.Integer({ description: "Index in the chunk (0 for a single action)." }),
        message: Type.Union([Type.String(), Type.Null()]),
      }),
      { description: "Newest first." },
    ),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  },
  {
    examples: [
      {
        data: [
          {
            id: "5a3f0c2e-8d41-4e0b-9d7e-2b1c0f9a7e11",
            at: "2026-11-26T10:00:00.000Z",
            robot_id: "arm-3",
            inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
            type: "linear_velocity",
            severity: "low",
            action_taken: "clamped",
            measured: 0.54,
            limit: 0.5,
            step: 0,
            message: "linear velocity 0.54 m/s exceeds 0.5 m/s",
          },
        ],
        next_cursor: null,
      },
    ],
  },
);

export const SummaryQuery = Type.Object(
  {
    robot_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    ...timeRange,
  },
  { additionalProperties: false },
);

const Counts = Type.Record(Type.String(), Type.Integer());

export const SummarySchema = Type.Object(
  {
    from: Type.String({ format: "date-time" }),
    to: Type.String({ format: "date-time" }),
    robot_id: Type.Union([Type.String(), Type.Null()]),
    total: Type.Integer(),
    by_type: Counts,
    by_severity: Counts,
    by_robot: Counts,
  },
  {
    examples: [
      {
        from: "2026-11-25T10:00:00.000Z",
        to: "2026-11-26T10:00:00.000Z",
        robot_id: null,
        total: 3,
        by_type: { linear_velocity: 2, workspace: 1 },
        by_severity: { low: 2, high: 1 },
        by_robot: { "arm-3": 3 },
      },
    ],
  },
);
