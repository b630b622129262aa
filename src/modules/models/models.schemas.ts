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

/** A remote (Triton) model with `metrics_urls`: what its endpoints' metrics pages said. */
const remoteModelExample = {
  ...modelExample,
  id: "openvla-7b-triton",
  description: "OpenVLA-7B on Triton (KServe v2).",
  backend: "kserve-v2",
  batching: { max_batch_size: 8, max_wait_ms: 2, max_queue: 256 },
  gpu: [
    {
      endpoint: "10.0.3.17:8000",
      scraped_at: "2026-12-06T06:00:15.000Z",
      gpus: [
        {
          uuid: "GPU-a1b2c3d4-0000-1111-2222-333344445555",
          utilization_ratio: 0.62,
          memory_used_bytes: 17_179_869_184,
          memory_total_bytes: 85_899_345_920,
        },
      ],
      queue: [{ model: "openvla", version: "1", queue_time_seconds: 0.0031 }],
    },
  ],
};

const GpuEndpointSchema = Type.Object(
  {
    endpoint: Type.String({
      description:
        "For superusers the host:port of the inference endpoint; for everyone else its position in the model's endpoint list (`endpoint-0`, ...): backend topology is the operator's.",
    }),
    scraped_at: Type.String({ format: "date-time", description: "When these values were read." }),
    gpus: Type.Array(
      Type.Object({
        uuid: Type.String({ description: "The GPU's UUID (Triton label gpu_uuid)." }),
        utilization_ratio: Type.Optional(Type.Number({ description: "0..1 (nv_gpu_utilization)." })),
        memory_used_bytes: Type.Optional(Type.Number({ description: "nv_gpu_memory_used_bytes." })),
        memory_total_bytes: Type.Optional(Type.Number({ description: "nv_gpu_memory_total_bytes." })),
      }),
      { description: "Per GPU; a value the backend did not report is absent." },
    ),
    queue: Type.Array(
      Type.Object({
        model: Type.String({ description: "The backend's model name (Triton label model)." }),
        version: Type.String(),
        queue_time_seconds: Type.Number({
          description:
            "Mean queue time per request over the last scrape interval (delta nv_inference_queue_duration_us / delta requests).",
        }),
      }),
      { description: "Per backend model and version; absent entries had no request in the last interval." },
    ),
  },
  { description: "One endpoint's scraped metrics." },
);

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
    gpu: Type.Optional(
      Type.Array(GpuEndpointSchema, {
        description:
          "Remote backends with `metrics_urls` only (docs/models.md, GPU visibility): GPU utilization, memory and queue " +
          "time scraped from each endpoint's Prometheus page. Only endpoints with current values are listed; the field " +
          "is absent when there are none (never configured, not scraped yet, or stale after failed scrapes).",
      }),
    ),
  },
  {
    $id: "Model",
    examples: [modelExample, remoteModelExample],
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
