import { type Static, Type } from "typebox";
import { SafetyResultSchema } from "../safety/safety.schemas.ts";

/** Robot ids: what a fleet uses as names, nothing that needs escaping anywhere. */
export const ROBOT_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$";

const finite = Type.Number({ minimum: -1e9, maximum: 1e9 });

export const JsonNumpyImageSchema = Type.Object(
  {
    __numpy__: Type.String({ description: "Standard base64 of the raw C-order bytes." }),
    dtype: Type.String({ description: "numpy descr; `|u1` (or `uint8`) for images.", examples: ["|u1"] }),
    shape: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 8, description: "[H, W, 3]." }),
  },
  { description: "A json_numpy uint8 HxWx3 array (as OpenVLA clients send)." },
);

export const RobotStateSchema = Type.Object(
  {
    ee_position: Type.Array(finite, {
      minItems: 3,
      maxItems: 3,
      description: "End-effector position [x, y, z] in metres, robot base frame.",
    }),
    ee_orientation: Type.Optional(
      Type.Array(finite, { minItems: 3, maxItems: 4, description: "Euler angles [3] or a quaternion [4]." }),
    ),
    gripper: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: "0 = closed, 1 = open." })),
  },
  {
    additionalProperties: false,
    description:
      "The robot's current state; used by safety evaluation (workspace and collision checks need ee_position).",
  },
);

const instruction = Type.String({
  minLength: 1,
  maxLength: 1000,
  description: "Natural-language task, 1..1000 characters.",
  examples: ["pick up the red block"],
});
const robotId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: ROBOT_ID_PATTERN,
  description:
    "Your robot's id (letters, digits and `._:/-`, 1..128 characters); logs and history filter on it. Required, " +
    "unless the API key is bound to a robot: then it defaults to the key's, and naming another robot is 403 `robot_mismatch`.",
  examples: ["arm-3"],
});
const model = Type.String({
  minLength: 1,
  maxLength: 128,
  description: "Model id (GET /v1/models); when omitted, the API key's model, else the default model.",
  examples: ["mock-openvla-7b"],
});
const unnormKey = Type.String({
  minLength: 1,
  maxLength: 128,
  description:
    "Dataset-statistics key for un-normalization; when omitted, the API key's (for the key's model), else the " +
    "model's default; required when the model has several and no default.",
  examples: ["bridge_orig"],
});

export const InferenceJsonBody = Type.Object(
  {
    image: Type.Union(
      [
        Type.String({
          minLength: 1,
          description: "Base64 of a JPEG, PNG or WebP file (a data: URL prefix is accepted).",
        }),
        JsonNumpyImageSchema,
      ],
      { description: "The camera frame: base64 JPEG/PNG/WebP, or a json_numpy uint8 HxWx3 array." },
    ),
    instruction,
    robot_id: Type.Optional(robotId),
    model: Type.Optional(model),
    unnorm_key: Type.Optional(unnormKey),
    robot_state: Type.Optional(RobotStateSchema),
  },
  {
    additionalProperties: false,
    examples: [
      {
        image: "/9j/4AAQSkZJRgABAQAAAQABAAD...",
        instruction: "pick up the red block",
        robot_id: "arm-3",
        model: "mock-openvla-7b",
        unnorm_key: "bridge_orig",
      },
      // With an API key bound to a robot: robot, model and unnorm_key come from the key.
      { image: "/9j/4AAQSkZJRgABAQAAAQABAAD...", instruction: "pick up the red block" },
    ],
  },
);
export type InferenceJsonBody = Static<typeof InferenceJsonBody>;

/** Multipart fields arrive as strings (robot_state as a JSON text); the file part as bytes. */
export const InferenceMultipartBody = Type.Object(
  {
    image: Type.Unsafe<Buffer>({ description: "The image file part (JPEG/PNG/WebP); a base64 text field also works." }),
    instruction,
    robot_id: Type.Optional(robotId),
    model: Type.Optional(model),
    unnorm_key: Type.Optional(unnormKey),
    robot_state: Type.Optional(Type.String({ maxLength: 4096, description: "robot_state as a JSON text." })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        image: "<the JPEG file's bytes>",
        instruction: "pick up the red block",
        robot_id: "arm-3",
        unnorm_key: "bridge_orig",
        robot_state: '{"ee_position":[0.3,0,0.2]}',
      },
    ],
  },
);

const ms = (description: string) => Type.Number({ description });

export const TimingSchema = Type.Object({
  preprocess_ms: ms("Image decoding and preprocessing."),
  queue_ms: ms("Wait in the model's batching queue."),
  model_ms: ms("Backend time of the batch that carried this request."),
  total_ms: ms("Whole request inside the server: auth, limits, parsing, the above, response building."),
});

/** The response's `safety` field (see docs/safety.md). */
export const SafetySchema = SafetyResultSchema;

/** The split experiment and variant that served a request (docs/experiments.md). */
export const ExperimentTagSchema = Type.Object(
  {
    id: Type.String({ format: "uuid", description: "The experiment (GET /v1/experiments/{id})." }),
    variant: Type.String({ description: "The name of the variant whose model served this request." }),
  },
  {
    description:
      "Present when a running split experiment chose the model: the request named no model and neither did its API key.",
    examples: [{ id: "3b6f0a2e-9c1d-4e5f-8a7b-6c5d4e3f2a1b", variant: "candidate" }],
  },
);

export const InferenceResponseSchema = Type.Object(
  {
    inference_id: Type.String({ format: "uuid", description: "Id of this inference; GET /v1/inference/{id}." }),
    model: Type.String(),
    backend: Type.String({ description: "Where the model ran; `mock` for the deterministic test model." }),
    action: Type.Array(Type.Number(), {
      description:
        "[dx, dy, dz, droll, dpitch, dyaw, gripper] in robot units (first step of a chunk): always the safe action, after any clamping.",
    }),
    action_chunk: Type.Optional(
      Type.Array(Type.Array(Type.Number()), { description: "The whole (H, D) chunk for chunking models." }),
    ),
    unnorm_key: Type.String({ description: "Statistics key used to un-normalize the action." }),
    safety: SafetySchema,
    timing: TimingSchema,
    experiment: Type.Optional(ExperimentTagSchema),
  },
  {
    examples: [
      {
        inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
        model: "mock-openvla-7b",
        backend: "mock",
        action: [0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996],
        unnorm_key: "bridge_orig",
        safety: {
          status: "pass",
          violations: [],
          action_taken: "none",
          raw_action: [0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996],
          skipped: [{ check: "acceleration", reason: "no previous action" }],
        },
        timing: { preprocess_ms: 1.2, queue_ms: 0.4, model_ms: 0.1, total_ms: 2.3 },
      },
    ],
  },
);
export type InferenceResponse = Static<typeof InferenceResponseSchema>;

const nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Number>>(t: T) =>
  Type.Union([t, Type.Null()]);

const inferenceLogExample = {
  id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
  created_at: "2026-11-26T12:00:00.000Z",
  source: "rest",
  status: "ok",
  error_code: null,
  model: "mock-openvla-7b",
  backend: "mock",
  robot_id: "arm-3",
  api_key_id: "5d2b7f5e-9d4c-4c1e-8f0a-2b7c9e1d3a44",
  instruction: "pick up the red block",
  instruction_sha256: "9c1f0e7e3b0f6f3c2c0a4e8d7b6a5f4e3d2c1b0a99887766554433221100ffee",
  image_sha256: "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5",
  action: [0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996],
  action_chunk: null,
  unnorm_key: "bridge_orig",
  safety_status: "pass",
  timing: { preprocess_ms: 1.2, queue_ms: 0.4, model_ms: 0.1, total_ms: 2.3 },
  experiment: null,
};

export const InferenceLogSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    created_at: Type.String({ format: "date-time" }),
    source: Type.Union([Type.Literal("rest"), Type.Literal("act"), Type.Literal("stream"), Type.Literal("openpi")]),
    status: Type.Union([Type.Literal("ok"), Type.Literal("error")]),
    error_code: nullable(Type.String({ description: "Error code (docs/errors.md) of a failed inference." })),
    model: Type.String(),
    backend: nullable(Type.String()),
    robot_id: nullable(Type.String()),
    api_key_id: nullable(Type.String({ format: "uuid" })),
    instruction: nullable(Type.String({ description: "Null when instruction logging is off." })),
    instruction_sha256: nullable(Type.String()),
    image_sha256: nullable(Type.String({ description: "SHA-256 of the image bytes as received." })),
    action: Type.Union([Type.Array(Type.Number()), Type.Null()]),
    action_chunk: Type.Union([Type.Array(Type.Array(Type.Number())), Type.Null()]),
    unnorm_key: nullable(Type.String()),
    safety_status: nullable(
      Type.String({
        description:
          "Safety verdict on the returned action: pass, clamped, rejected, emergency_stop or not_evaluated; null for failed requests.",
      }),
    ),
    timing: Type.Object({
      preprocess_ms: nullable(Type.Number()),
      queue_ms: nullable(Type.Number()),
      model_ms: nullable(Type.Number()),
      total_ms: Type.Number(),
    }),
    experiment: Type.Union([ExperimentTagSchema, Type.Null()], {
      description: "The split experiment and variant that chose the model; null when none did.",
    }),
  },
  { examples: [inferenceLogExample] },
);

export const HistoryQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: "Page size (max 200)." }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: "Opaque `next_cursor` of the previous page." })),
    robot_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    status: Type.Optional(Type.Union([Type.Literal("ok"), Type.Literal("error")])),
    source: Type.Optional(
      Type.Union([Type.Literal("rest"), Type.Literal("act"), Type.Literal("stream"), Type.Literal("openpi")]),
    ),
    from: Type.Optional(Type.String({ format: "date-time", description: "Inclusive lower bound of created_at." })),
    to: Type.Optional(Type.String({ format: "date-time", description: "Exclusive upper bound of created_at." })),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

export const HistoryPageSchema = Type.Object(
  {
    data: Type.Array(InferenceLogSchema, { description: "Newest first." }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass as `cursor` for the next page; null at the end.",
    }),
  },
  {
    examples: [
      {
        data: [inferenceLogExample],
        next_cursor: "WyIyMDI2LTExLTI2VDEyOjAwOjAwLjAwMFoiLCIwZjhiMWMxZS01ZDBhLTRhNTctOWE0My0wYzNmOGYwZDJiMTEiXQ",
      },
    ],
  },
);

export const InferenceIdParams = Type.Object({
  id: Type.String({ format: "uuid", description: "An inference_id." }),
});
