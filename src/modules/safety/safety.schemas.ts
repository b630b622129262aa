import { Type } from "typebox";

/** Wire schemas for the routes to come (the `safety` field of inference responses, robot_state). */

const SeveritySchema = Type.Union(
  [Type.Literal("low"), Type.Literal("medium"), Type.Literal("high"), Type.Literal("critical")],
  { description: "From the excess over the limit: <= 10 % low, <= 50 % medium, <= 100 % high, beyond critical." },
);

export const RobotStateSchema = Type.Object(
  {
    ee_position: Type.Optional(
      Type.Tuple([Type.Number(), Type.Number(), Type.Number()], {
        description:
          "End-effector position [x, y, z] in metres, robot base frame. Without it workspace and collision checks are skipped.",
      }),
    ),
    ee_orientation: Type.Optional(
      Type.Array(Type.Number(), {
        minItems: 3,
        maxItems: 9,
        description: "Orientation (any representation); passed to classifiers.",
      }),
    ),
    gripper: Type.Optional(Type.Number({ description: "Current gripper state; held when an action is rejected." })),
  },
  { additionalProperties: false, examples: [{ ee_position: [0.3, 0.0, 0.2], gripper: 1 }] },
);

const ActionOrChunk = Type.Union([Type.Array(Type.Number()), Type.Array(Type.Array(Type.Number()))]);

export const SafetyResultSchema = Type.Object(
  {
    status: Type.Union(
      [
        Type.Literal("pass"),
        Type.Literal("clamped"),
        Type.Literal("rejected"),
        Type.Literal("emergency_stop"),
        Type.Literal("not_evaluated"),
      ],
      { description: "pass: no violation (or policy none); otherwise what was done to the action." },
    ),
    violations: Type.Array(
      Type.Object({
        type: Type.String({
          description:
            "workspace, linear_velocity, angular_velocity, linear_acceleration, angular_acceleration, collision, gripper, invalid_action, classifier.",
        }),
        severity: SeveritySchema,
        measured: Type.Number(),
        limit: Type.Number(),
        step: Type.Integer({ description: "Index in the chunk (0 for a single action)." }),
        message: Type.String(),
      }),
    ),
    action_taken: Type.Union([
      Type.Literal("none"),
      Type.Literal("clamped"),
      Type.Literal("rejected"),
      Type.Literal("emergency_stop"),
    ]),
    raw_action: ActionOrChunk,
    skipped: Type.Array(Type.Object({ check: Type.String(), reason: Type.String() }), {
      description: "Checks that could not run, with the reason (e.g. no robot_state.ee_position).",
    }),
    reason: Type.Optional(Type.String()),
  },
  {
    description: "The safety verdict on the returned action; the response's `action` is always the safe action.",
    examples: [
      {
        status: "clamped",
        violations: [
          {
            type: "linear_velocity",
            severity: "low",
            measured: 0.54,
            limit: 0.5,
            step: 0,
            message: "linear velocity 0.54 m/s exceeds 0.5 m/s",
          },
        ],
        action_taken: "clamped",
        raw_action: [0.108, 0, 0, 0, 0, 0, 1],
        skipped: [{ check: "acceleration", reason: "no previous action" }],
      },
    ],
  },
);
