import { type Static, Type } from "typebox";
import { ROBOT_ID_PATTERN } from "../inference/inference.schemas.ts";

/** Wire schemas of the experiment routes (docs/experiments.md). */

const nullable = <T extends ReturnType<typeof Type.Number | typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const nnum = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });

const EXAMPLE_ID = "3b6f0a2e-9c1d-4e5f-8a7b-6c5d4e3f2a1b";
const modelName = Type.String({ minLength: 1, maxLength: 128, description: "A model id of GET /v1/models." });

export const VariantSchema = Type.Object(
  {
    name: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description: "Unique within the experiment; defaults to the model id. Responses and log rows name it.",
      }),
    ),
    model: modelName,
    weight: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1_000_000,
      description: "Relative share of traffic (weights need not sum to 1).",
    }),
  },
  { additionalProperties: false },
);

export const CreateExperimentBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200, description: "Free text to recognise it by." }),
    mode: Type.Optional(
      Type.Enum(["split", "shadow"], {
        description:
          "split (default): requests that name no model are routed to the variants. shadow: a sampled fraction of " +
          "requests also runs on candidate_model after the answer is sent; nothing served changes.",
      }),
    ),
    assignment: Type.Optional(
      Type.Enum(["robot_id", "request"], {
        description:
          "split: robot_id (default) keeps each robot on one variant, by a hash of (experiment id, robot id), on " +
          "every instance; requests without a robot id are drawn per request. request: a draw per request.",
      }),
    ),
    variants: Type.Optional(
      Type.Array(VariantSchema, {
        minItems: 2,
        maxItems: 10,
        description: "split: 2-10 variants. The first is the control the others are compared with.",
      }),
    ),
    candidate_model: Type.Optional({ ...modelName, description: "shadow: the model run beside the served one." }),
    sample_rate: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: "shadow: the fraction of requests shadowed (0-1)." }),
    ),
    starts_at: Type.Optional(Type.String({ format: "date-time", description: "When routing starts; default: now." })),
    ends_at: Type.Optional(
      Type.String({ format: "date-time", description: "When it ends by itself; default: when stopped." }),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: "pi0 vs openvla on the packing line",
        assignment: "robot_id",
        variants: [
          { name: "control", model: "mock-openvla-7b", weight: 0.9 },
          { name: "candidate", model: "mock-pi0", weight: 0.1 },
        ],
      },
      { name: "shadow tabletop-policy", mode: "shadow", candidate_model: "tabletop-policy", sample_rate: 0.1 },
    ],
  },
);
export type CreateExperiment = Static<typeof CreateExperimentBody>;

const StoredVariant = Type.Object({ name: Type.String(), model: Type.String(), weight: Type.Number() });

const EXAMPLE_VIEW = {
  id: EXAMPLE_ID,
  name: "pi0 vs openvla on the packing line",
  mode: "split",
  status: "running",
  assignment: "robot_id",
  variants: [
    { name: "control", model: "mock-openvla-7b", weight: 0.9 },
    { name: "candidate", model: "mock-pi0", weight: 0.1 },
  ],
  candidate_model: null,
  sample_rate: null,
  starts_at: null,
  ends_at: null,
  stopped_at: null,
  created_at: "2026-12-01T09:00:00.000Z",
};

export const ExperimentSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    name: Type.String(),
    mode: Type.Enum(["split", "shadow"]),
    status: Type.Enum(["scheduled", "running", "stopped", "ended"], {
      description: "scheduled (starts_at ahead), running, stopped (POST .../stop) or ended (ends_at passed).",
    }),
    assignment: Type.Union([Type.Enum(["robot_id", "request"]), Type.Null()]),
    variants: Type.Union([Type.Array(StoredVariant), Type.Null()]),
    candidate_model: nullable(Type.String()),
    sample_rate: nullable(Type.Number()),
    starts_at: nullable(Type.String({ format: "date-time" })),
    ends_at: nullable(Type.String({ format: "date-time" })),
    stopped_at: Type.Union([Type.String({ format: "date-time" }), Type.Null()], {
      description: "When POST .../stop ended it before ends_at; null otherwise (one that ran to ends_at is ended).",
    }),
    created_at: Type.String({ format: "date-time" }),
  },
  { examples: [EXAMPLE_VIEW] },
);

export const ExperimentPageSchema = Type.Object(
  {
    data: Type.Array(ExperimentSchema, { description: "Newest first." }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass as `cursor` for the next (older) page; null at the end.",
    }),
  },
  { examples: [{ data: [EXAMPLE_VIEW], next_cursor: null }] },
);

export const ListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 50, description: "Page size (max 100)." }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: "Opaque `next_cursor` of the previous page." })),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: Type.String({ format: "uuid", description: "The experiment's id." }) });

const Verdicts = Type.Object(
  {
    pass: Type.Integer(),
    clamped: Type.Integer(),
    rejected: Type.Integer(),
    emergency_stop: Type.Integer(),
    not_evaluated: Type.Integer(),
  },
  { description: "Safety verdicts, counted." },
);

const Comparison = Type.Object(
  {
    test: Type.Union([Type.Enum(["welch_t", "two_proportion_z", "cluster_robust_t"]), Type.Null()], {
      description:
        "The test used: `cluster_robust_t` for assignment `robot_id` (the robot is the unit), else `welch_t` " +
        "(ratings) or `two_proportion_z` (success rate); null when it is undefined (fewer than 2 units a side, " +
        "no spread, no outcomes).",
    }),
    unit: Type.Enum(["inference", "robot"], {
      description:
        "What n_control and n_variant count: robots for assignment `robot_id` (an inference without a robot id " +
        "is a unit of its own), else inferences.",
    }),
    n_control: Type.Integer({ description: "Sample size of the control, in units." }),
    n_variant: Type.Integer({ description: "Sample size of this variant, in units." }),
    difference: nnum("This variant's figure minus the control's (over inferences, whatever the unit)."),
    statistic: nnum("t (Welch or cluster-robust) or z."),
    df: nnum("Welch–Satterthwaite degrees of freedom, counted in units (t-tests only)."),
    p_value: nnum("Two-sided p-value."),
  },
  {},
);

export const ResultsSchema = Type.Object(
  {
    experiment_id: Type.String({ format: "uuid" }),
    status: Type.Enum(["scheduled", "running", "stopped", "ended"]),
    control: Type.String({ description: "The first variant: the others are tested against it." }),
    variants: Type.Array(
      Type.Object({
        name: Type.String(),
        model: Type.String(),
        weight: Type.Number(),
        requests: Type.Integer({ description: "Logged requests this variant served (failed ones included)." }),
        errors: Type.Integer(),
        error_rate: nnum("errors / requests; null without requests."),
        latency_ms: Type.Object(
          { mean: nnum("Mean total_ms."), p50: nnum("Median total_ms."), p95: nnum("95th percentile total_ms.") },
          { description: "Over successful requests." },
        ),
        safety: Verdicts,
        feedback: Type.Object({
          rated: Type.Integer({ description: "success ratings (1-5) received." }),
          mean_rating: nnum("Mean success rating."),
          safety_rated: Type.Integer(),
          mean_safety_rating: nnum("Mean safety rating."),
          outcomes: Type.Integer({ description: "Inferences with a success rating or a failure report." }),
          successes: Type.Integer({ description: "Of those: no failure report and mean success rating >= 4." }),
          success_rate: nnum("successes / outcomes."),
          corrections: Type.Integer(),
          correction_magnitude: Type.Object(
            {
              translation: nnum("Mean L2, dims 0-2."),
              rotation: nnum("Mean L2, dims 3-5."),
              gripper: nnum("Mean |dim 6|."),
            },
            { description: "Mean difference between corrected and served actions." },
          ),
        }),
        vs_control: Type.Union(
          [
            Type.Object({
              rating: {
                ...Comparison,
                description:
                  "Mean success rating over rated inferences (an inference rated several times counts once, with " +
                  "the mean of its ratings): the cluster-robust t-test over robots for assignment `robot_id`, " +
                  "Welch's t-test over inferences for `request`; two-sided.",
              },
              success_rate: {
                ...Comparison,
                description:
                  "Success rate: the cluster-robust t-test over robots for assignment `robot_id`, the pooled " +
                  "two-proportion z-test over inferences for `request`; two-sided.",
              },
            }),
            Type.Null(),
          ],
          { description: "Null for the control." },
        ),
      }),
    ),
  },
  {
    examples: [
      {
        experiment_id: EXAMPLE_ID,
        status: "running",
        control: "control",
        variants: [
          {
            name: "control",
            model: "mock-openvla-7b",
            weight: 0.9,
            requests: 900,
            errors: 2,
            error_rate: 0.0022,
            latency_ms: { mean: 41.3, p50: 39.8, p95: 61.2 },
            safety: { pass: 880, clamped: 18, rejected: 0, emergency_stop: 0, not_evaluated: 0 },
            feedback: {
              rated: 120,
              mean_rating: 3.9,
              safety_rated: 10,
              mean_safety_rating: 4.6,
              outcomes: 130,
              successes: 84,
              success_rate: 0.646,
              corrections: 12,
              correction_magnitude: { translation: 0.021, rotation: 0.034, gripper: 0.1 },
            },
            vs_control: null,
          },
          {
            name: "candidate",
            model: "mock-pi0",
            weight: 0.1,
            requests: 100,
            errors: 1,
            error_rate: 0.01,
            latency_ms: { mean: 52.4, p50: 50.1, p95: 77.9 },
            safety: { pass: 95, clamped: 4, rejected: 0, emergency_stop: 0, not_evaluated: 0 },
            feedback: {
              rated: 15,
              mean_rating: 4.3,
              safety_rated: 2,
              mean_safety_rating: 5,
              outcomes: 16,
              successes: 13,
              success_rate: 0.8125,
              corrections: 1,
              correction_magnitude: { translation: 0.012, rotation: 0.02, gripper: 0 },
            },
            vs_control: {
              rating: {
                test: "cluster_robust_t",
                unit: "robot",
                n_control: 11,
                n_variant: 3,
                difference: 0.41,
                statistic: 1.52,
                df: 3.4,
                p_value: 0.216,
              },
              success_rate: {
                test: "cluster_robust_t",
                unit: "robot",
                n_control: 12,
                n_variant: 3,
                difference: 0.1665,
                statistic: 1.18,
                df: 3.9,
                p_value: 0.305,
              },
            },
          },
        ],
      },
    ],
  },
);

export const ShadowQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: "Page size (max 200)." }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: "Opaque `next_cursor` of the previous page." })),
    robot_id: Type.Optional(Type.String({ pattern: ROBOT_ID_PATTERN, description: "Only this robot's requests." })),
    instruction: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1000,
        description: "Only this instruction (matched by its normalized hash: case and spacing do not matter).",
      }),
    ),
  },
  { additionalProperties: false },
);

const dist = Type.Object({ mean: nnum("Mean."), p95: nnum("95th percentile.") });

export const ShadowPageSchema = Type.Object(
  {
    summary: Type.Object(
      {
        n: Type.Integer({ description: "Shadowed requests recorded (matching the filters)." }),
        errors: Type.Integer({ description: "Of those, candidate calls that failed." }),
        translation: dist,
        rotation: dist,
        gripper: dist,
        candidate_ms_mean: nnum("Mean candidate latency (its call, then its safety verdict)."),
        candidate_safety: Verdicts,
      },
      { description: "Over every record matching the filters, not only this page." },
    ),
    data: Type.Array(
      Type.Object({
        id: Type.String({ format: "uuid" }),
        created_at: Type.String({ format: "date-time" }),
        inference_id: Type.String({ format: "uuid", description: "The served request (GET /v1/inference/{id})." }),
        robot_id: nullable(Type.String()),
        instruction_key: nullable(Type.String({ description: "SHA-256 of the normalized instruction." })),
        served_model: Type.String(),
        candidate_model: Type.String(),
        served_action: Type.Array(Type.Number(), { description: "The action sent to the robot." }),
        served_safety_status: nullable(Type.String()),
        candidate_action: Type.Union([Type.Array(Type.Number()), Type.Null()], {
          description: "The candidate's raw action; null when its call failed.",
        }),
        candidate_safety_status: nullable(
          Type.String({ description: "The verdict the safety gate would have given it (judged without effects)." }),
        ),
        distance: Type.Union(
          [
            Type.Object({
              translation: Type.Number({ description: "L2 of the difference in dims 0-2." }),
              rotation: Type.Number({ description: "L2 of the difference in dims 3-5." }),
              gripper: Type.Number({ description: "|difference in dim 6|." }),
            }),
            Type.Null(),
          ],
          { description: "Candidate vs served action." },
        ),
        candidate_ms: nnum("Candidate latency."),
        error_code: nullable(Type.String({ description: "The candidate call's error code (docs/errors.md)." })),
      }),
      { description: "Newest first." },
    ),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  },
  {
    examples: [
      {
        summary: {
          n: 1,
          errors: 0,
          translation: { mean: 0.0042, p95: 0.0042 },
          rotation: { mean: 0.0061, p95: 0.0061 },
          gripper: { mean: 0.004, p95: 0.004 },
          candidate_ms_mean: 3.2,
          candidate_safety: { pass: 1, clamped: 0, rejected: 0, emergency_stop: 0, not_evaluated: 0 },
        },
        data: [
          {
            id: "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            created_at: "2026-12-01T09:00:01.000Z",
            inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
            robot_id: "arm-3",
            instruction_key: "5c0f7d6e1b2a39485766554433221100ffeeddccbbaa99887766554433221100",
            served_model: "mock-openvla-7b",
            candidate_model: "tabletop-policy",
            served_action: [0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996],
            served_safety_status: "pass",
            candidate_action: [0.0031, -0.0012, 0.0049, 0.0031, -0.002, 0.0001, 1.0],
            candidate_safety_status: "pass",
            distance: { translation: 0.0042, rotation: 0.0061, gripper: 0.004 },
            candidate_ms: 3.2,
            error_code: null,
          },
        ],
        next_cursor: null,
      },
    ],
  },
);
