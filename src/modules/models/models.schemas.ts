import { type Static, Type } from "typebox";

const nullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });

const modelExample = {
  id: "mock-openvla-7b",
  description: "Mock with OpenVLA-7B's interface.",
  backend: "mock",
  status: "ready",
  action: { dim: 7, chunk: 1 },
  unnorm_keys: ["bridge_orig", "fractal20220817_data"],
  default_unnorm_key: null,
  input: {
    image: { width: 224, height: 224, strategy: "resize-naive" },
    image_formats: ["jpeg", "png", "webp", "uint8 HxWx3 array"],
    prompt_template: "In: What action should the robot take to {instruction}?\nOut:",
  },
  batching: { max_batch_size: 16, max_wait_ms: 2, max_queue: 256 },
  stats: {
    requests: 120,
    errors: 1,
    latency_ms: { p50: 3.1, p95: 5.2, p99: 8.4 },
    queue_depth: 0,
    mean_batch_size: 2.4,
  },
};

export const ModelSchema = Type.Object(
  {
    id: Type.String({ description: "Model id, used as `model` in inference requests." }),
    description: Type.String(),
    backend: Type.Union(
      [Type.Literal("mock"), Type.Literal("onnx"), Type.Literal("openvla-http"), Type.Literal("kserve-v2")],
      { description: "Where the model runs. `mock` is deterministic and not a policy." },
    ),
    status: Type.Union(
      [Type.Literal("loading"), Type.Literal("ready"), Type.Literal("degraded"), Type.Literal("down")],
      {
        description: "loading: warming up; ready: serving; degraded: some endpoints failing; down: cannot serve.",
      },
    ),
    action: Type.Object(
      {
        dim: Type.Integer({ description: "Action dimension D (7 = [dx, dy, dz, droll, dpitch, dyaw, gripper])." }),
        chunk: Type.Integer({ description: "Steps H per answer (1 = one action, >1 = an action chunk)." }),
      },
      { description: "Shape of the answer." },
    ),
    unnorm_keys: Type.Array(Type.String(), {
      description: "Dataset-statistics keys accepted as `unnorm_key` (pick the one matching your robot/dataset).",
    }),
    default_unnorm_key: Type.Union([Type.String(), Type.Null()], {
      description: "Used when the request names none; null means the request must name one.",
    }),
    input: Type.Object({
      image: Type.Object({
        width: Type.Integer(),
        height: Type.Integer(),
        strategy: Type.String({ description: "resize-naive | letterbox | center-crop (90% of the area)." }),
      }),
      image_formats: Type.Array(Type.String()),
      prompt_template: Type.String({ description: "How the instruction becomes the model prompt." }),
    }),
    batching: Type.Object({
      max_batch_size: Type.Integer(),
      max_wait_ms: Type.Number(),
      max_queue: Type.Integer(),
    }),
    stats: Type.Object(
      {
        requests: Type.Integer({ description: "Inference requests routed to this model since start." }),
        errors: Type.Integer({ description: "Server-side failures (5xx); callers' 4xx mistakes are not counted." }),
        latency_ms: Type.Object({
          p50: nullableNumber("Median end-to-end engine latency over recent requests."),
          p95: nullableNumber("95th percentile."),
          p99: nullableNumber("99th percentile."),
        }),
        queue_depth: Type.Integer({ description: "Requests waiting now." }),
        mean_batch_size: nullableNumber("Mean requests per backend call."),
      },
      { description: "Live statistics of this server instance since start." },
    ),
  },
  {
    $id: "Model",
    examples: [modelExample],
  },
);

export type ModelDto = Static<typeof ModelSchema>;

export const ModelListSchema = Type.Object(
  { data: Type.Array(ModelSchema), default_model: Type.String() },
  { examples: [{ data: [modelExample], default_model: "mock-openvla-7b" }] },
);

export const ModelParams = Type.Object({
  model_id: Type.String({ minLength: 1, maxLength: 64, description: "A model id from GET /v1/models." }),
});
