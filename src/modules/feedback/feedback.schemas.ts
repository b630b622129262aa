import { type Static, Type } from "typebox";
import { ROBOT_ID_PATTERN } from "../inference/inference.schemas.ts";

/** Wire schemas of the feedback routes (docs/feedback.md). */

export const FEEDBACK_TYPES = ["success", "safety", "correction", "failure"] as const;
export type FeedbackType = (typeof FEEDBACK_TYPES)[number];
export const OBSERVED_ISSUES = ["collision", "near_miss", "unexpected_motion", "workspace_exit", "other"] as const;
export const FAILURE_TYPES = [
  "grasp_failed",
  "wrong_object",
  "timeout",
  "dropped_object",
  "collision",
  "other",
] as const;
export const FAILURE_SEVERITIES = ["low", "medium", "high", "critical"] as const;

/** Longest comment or failure description, in characters. */
export const MAX_TEXT = 2000;
/** A corrected action value must be finite and within +-ACTION_BOUND (actions are deltas and angles, not miles). */
export const ACTION_BOUND = 10;
export const ACTION_DIM = 7;
/** Longest chunk the model registry allows. */
export const MAX_CHUNK = 256;

const literals = <const T extends readonly string[]>(values: T, description: string) =>
  Type.Enum([...values] as [...T], { description });

const EXAMPLE_INFERENCE_ID = "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11";

const inferenceId = Type.String({
  format: "uuid",
  description: "The `inference_id` an inference answered with (REST, /act, stream or openpi); it must be yours.",
  examples: [EXAMPLE_INFERENCE_ID],
});
const rating = Type.Integer({ minimum: 1, maximum: 5, description: "1 (worst) to 5 (best).", examples: [4] });
const comment = Type.String({
  maxLength: MAX_TEXT,
  description: `Free text, up to ${MAX_TEXT} characters (U+0000 is refused).`,
  examples: ["placed the block 2 cm left of the target"],
});

const actionValue = Type.Number({ minimum: -ACTION_BOUND, maximum: ACTION_BOUND });
const action7 = Type.Array(actionValue, {
  minItems: ACTION_DIM,
  maxItems: ACTION_DIM,
  description: `7 finite numbers within +-${ACTION_BOUND}: [dx, dy, dz, droll, dpitch, dyaw, gripper], as the model returns them.`,
});

export const SuccessBody = Type.Object(
  { inference_id: inferenceId, rating, comment: Type.Optional(comment) },
  {
    additionalProperties: false,
    examples: [{ inference_id: EXAMPLE_INFERENCE_ID, rating: 5, comment: "picked it up first try" }],
  },
);

export const SafetyBody = Type.Object(
  {
    inference_id: inferenceId,
    rating: Type.Integer({ minimum: 1, maximum: 5, description: "How safe the motion looked: 1 (dangerous) to 5." }),
    observed_issue: Type.Optional(literals(OBSERVED_ISSUES, `What was seen: ${OBSERVED_ISSUES.join(", ")}.`)),
    comment: Type.Optional(comment),
  },
  {
    additionalProperties: false,
    examples: [{ inference_id: EXAMPLE_INFERENCE_ID, rating: 2, observed_issue: "near_miss" }],
  },
);

export const CorrectionBody = Type.Object(
  {
    inference_id: inferenceId,
    corrected_action: Type.Optional(action7),
    corrected_chunk: Type.Optional(
      Type.Array(action7, {
        minItems: 1,
        maxItems: MAX_CHUNK,
        description:
          "For chunking models: one corrected 7-number step per step of the inference's chunk (same length).",
      }),
    ),
    comment: Type.Optional(comment),
  },
  {
    additionalProperties: false,
    description: "Exactly one of `corrected_action` and `corrected_chunk`.",
    examples: [
      {
        inference_id: EXAMPLE_INFERENCE_ID,
        corrected_action: [0.01, -0.02, 0.0, 0.0, 0.0, 0.1, 1.0],
        comment: "should have moved left",
      },
    ],
  },
);

export const FailureBody = Type.Object(
  {
    inference_id: inferenceId,
    failure_type: literals(FAILURE_TYPES, `What went wrong: ${FAILURE_TYPES.join(", ")}.`),
    description: Type.String({
      minLength: 1,
      maxLength: MAX_TEXT,
      pattern: "\\S",
      description: `What happened, 1..${MAX_TEXT} characters, not only spaces.`,
    }),
    severity: Type.Optional(literals(FAILURE_SEVERITIES, "low, medium, high or critical.")),
  },
  {
    additionalProperties: false,
    examples: [
      {
        inference_id: EXAMPLE_INFERENCE_ID,
        failure_type: "dropped_object",
        description: "the cup slipped out of the gripper halfway to the shelf",
        severity: "medium",
      },
    ],
  },
);

export const IdempotencyHeaders = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: "^[\\x21-\\x7e]+$",
      description:
        "Any 1..255 printable ASCII characters without spaces (a UUID is a good choice). A retry with the same key " +
        "and body returns the first result (200, `Idempotent-Replayed: true`); another body is 422 `idempotency_key_reused`.",
    }),
  ),
});

const nullable = <T extends ReturnType<typeof Type.String>>(s: T) => Type.Union([s, Type.Null()]);
const numbers = Type.Array(Type.Number());

export const FeedbackViewSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    type: literals(FEEDBACK_TYPES, "success, safety, correction or failure."),
    inference_id: Type.String({ format: "uuid" }),
    inference_created_at: Type.String({ format: "date-time" }),
    robot_id: Type.Union([Type.String(), Type.Null()], { description: "The inference's robot (copied)." }),
    model: Type.String({ description: "The inference's model (copied)." }),
    source: Type.Union([Type.String(), Type.Null()], { description: "rest, act, stream or openpi." }),
    api_key_id: Type.Union([Type.String(), Type.Null()], { description: "The key that sent it, if a key did." }),
    user_id: Type.Union([Type.String(), Type.Null()], {
      description: "The user whose session sent it (null after their account was deleted).",
    }),
    rating: Type.Union([Type.Integer(), Type.Null()], { description: "success and safety: 1-5." }),
    observed_issue: nullable(Type.String()),
    failure_type: nullable(Type.String()),
    severity: nullable(Type.String()),
    comment: nullable(Type.String()),
    description: nullable(Type.String()),
    corrected_action: Type.Union([numbers, Type.Null()]),
    corrected_chunk: Type.Union([Type.Array(numbers), Type.Null()]),
    model_action: Type.Union([numbers, Type.Null()], {
      description: "correction: the action the service returned for the inference (after safety).",
    }),
    model_chunk: Type.Union([Type.Array(numbers), Type.Null()]),
    error: Type.Union(
      [
        Type.Object({
          translation: Type.Number({ description: "L2 distance of dims 0-2." }),
          rotation: Type.Number({ description: "L2 distance of dims 3-5." }),
          gripper: Type.Number({ description: "|difference| of dim 6." }),
        }),
        Type.Null(),
      ],
      { description: "correction: corrected minus model, per part; for chunks the mean over steps." },
    ),
    created_at: Type.String({ format: "date-time" }),
  },
  { description: "One feedback record; members that do not belong to its type are null." },
);

export type FeedbackView = Static<typeof FeedbackViewSchema>;

export const EXAMPLE_VIEW: FeedbackView = {
  id: "6d2b8f0a-3c4e-4f1a-9b2d-7e8f9a0b1c2d",
  type: "correction",
  inference_id: EXAMPLE_INFERENCE_ID,
  inference_created_at: "2026-11-26T10:00:00.000Z",
  robot_id: "arm-3",
  model: "mock-openvla-7b",
  source: "rest",
  api_key_id: "2c5e1f7a-9b3d-4e8f-a1c2-3d4e5f6a7b8c",
  user_id: null,
  rating: null,
  observed_issue: null,
  failure_type: null,
  severity: null,
  comment: "should have moved left",
  description: null,
  corrected_action: [0.01, -0.02, 0.0, 0.0, 0.0, 0.1, 1.0],
  corrected_chunk: null,
  model_action: [0.04, 0.02, 0.0, 0.0, 0.0, 0.1, 1.0],
  model_chunk: null,
  error: { translation: 0.05, rotation: 0, gripper: 0 },
  created_at: "2026-11-26T10:00:05.000Z",
};

export const FeedbackResponseSchema = Type.Object(FeedbackViewSchema.properties, {
  description: "One feedback record; members that do not belong to its type are null.",
  examples: [EXAMPLE_VIEW],
});

const timeRange = {
  from: Type.Optional(Type.String({ format: "date-time", description: "Inclusive lower bound on created_at." })),
  to: Type.Optional(Type.String({ format: "date-time", description: "Exclusive upper bound on created_at." })),
};
const robotFilter = Type.Optional(
  Type.String({ minLength: 1, maxLength: 128, pattern: ROBOT_ID_PATTERN, description: "Only this robot." }),
);
const modelFilter = Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "Only this model." }));

export const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: "Page size (max 200)." }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: "Opaque `next_cursor` of the previous page." })),
    type: Type.Optional(literals(FEEDBACK_TYPES, "Only this type.")),
    robot_id: robotFilter,
    model: modelFilter,
    inference_id: Type.Optional(Type.String({ format: "uuid", description: "Only feedback on this inference." })),
    ...timeRange,
  },
  { additionalProperties: false },
);

export const FeedbackPageSchema = Type.Object(
  {
    data: Type.Array(FeedbackViewSchema, { description: "Newest first." }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass as `cursor` for the next (older) page; null at the end.",
    }),
  },
  { examples: [{ data: [EXAMPLE_VIEW], next_cursor: null }] },
);

export const StatsQuery = Type.Object(
  { robot_id: robotFilter, model: modelFilter, ...timeRange },
  { additionalProperties: false },
);

const Counts = Type.Record(Type.String(), Type.Integer());
const nullableNumber = Type.Union([Type.Number(), Type.Null()]);
const RatingStats = Type.Object({
  count: Type.Integer(),
  mean: nullableNumber,
  distribution: Type.Object(
    { 1: Type.Integer(), 2: Type.Integer(), 3: Type.Integer(), 4: Type.Integer(), 5: Type.Integer() },
    { description: "How many ratings of each value." },
  ),
});
const ErrorStats = Type.Object({
  mean: nullableNumber,
  p50: nullableNumber,
  p95: nullableNumber,
  max: nullableNumber,
});
export const StatsGroupSchema = Type.Object({
  count: Type.Integer(),
  by_type: Type.Object({
    success: Type.Integer(),
    safety: Type.Integer(),
    correction: Type.Integer(),
    failure: Type.Integer(),
  }),
  success_rating: RatingStats,
  safety_rating: RatingStats,
  observed_issues: Counts,
  correction_error: Type.Object(
    { count: Type.Integer(), translation: ErrorStats, rotation: ErrorStats, gripper: ErrorStats },
    { description: "Over corrections: p50/p95 are exact (percentile_cont over the rows)." },
  ),
  failure_types: Counts,
  failure_severities: Counts,
});
export type StatsGroup = Static<typeof StatsGroupSchema>;

const emptyRating = { count: 0, mean: null, distribution: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 } };
const EXAMPLE_GROUP: StatsGroup = {
  count: 3,
  by_type: { success: 2, safety: 0, correction: 1, failure: 0 },
  success_rating: { count: 2, mean: 4.5, distribution: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 1 } },
  safety_rating: emptyRating,
  observed_issues: {},
  correction_error: {
    count: 1,
    translation: { mean: 0.05, p50: 0.05, p95: 0.05, max: 0.05 },
    rotation: { mean: 0, p50: 0, p95: 0, max: 0 },
    gripper: { mean: 0, p50: 0, p95: 0, max: 0 },
  },
  failure_types: {},
  failure_severities: {},
};

/** Most groups listed per dimension (the largest by count); `truncated` says when more exist. */
export const MAX_STATS_GROUPS = 1000;

export const StatsSchema = Type.Object(
  {
    from: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
    to: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
    overall: StatsGroupSchema,
    by_model: Type.Array(Type.Object({ model: Type.String(), ...StatsGroupSchema.properties }), {
      description: `Largest first, at most ${MAX_STATS_GROUPS}.`,
    }),
    by_robot: Type.Array(
      Type.Object({ robot_id: Type.Union([Type.String(), Type.Null()]), ...StatsGroupSchema.properties }),
      { description: `Largest first, at most ${MAX_STATS_GROUPS}; null: inferences that named no robot.` },
    ),
    truncated: Type.Boolean({ description: `true when a dimension had more than ${MAX_STATS_GROUPS} groups.` }),
  },
  {
    examples: [
      {
        from: "2026-11-01T00:00:00.000Z",
        to: null,
        overall: EXAMPLE_GROUP,
        by_model: [{ model: "mock-openvla-7b", ...EXAMPLE_GROUP }],
        by_robot: [{ robot_id: "arm-3", ...EXAMPLE_GROUP }],
        truncated: false,
      },
    ],
  },
);
export type Stats = Static<typeof StatsSchema>;
