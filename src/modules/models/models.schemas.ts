import { type Static, Type } from "typebox";

const nullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });

const modelExample = {
  id: "mock-openvla-7b",
  owner: "operator",
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
    owner: Type.Union([Type.Literal("operator"), Type.Literal("customer")], {
      description:
        "`operator`: one of the service's models. `customer`: registered by your account (POST /v1/models), " +
        "private to it, served from your endpoints.",
    }),
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

const unnormExample = {
  mean: [0, 0, 0, 0, 0, 0, 0.5],
  std: [0.01, 0.01, 0.01, 0.03, 0.03, 0.03, 0.5],
  min: [-0.05, -0.05, -0.05, -0.2, -0.2, -0.2, 0],
  max: [0.05, 0.05, 0.05, 0.2, 0.2, 0.2, 1],
  q01: [-0.03, -0.03, -0.03, -0.1, -0.1, -0.1, 0],
  q99: [0.03, 0.03, 0.03, 0.1, 0.1, 0.1, 1],
  mask: [true, true, true, true, true, true, false],
};

/** A customer's model as in the docs (docs/models.md, "Bring your own endpoint"). */
export const customerModelExample = {
  id: "my-openvla-finetune",
  description: "OpenVLA-7B fine-tuned on our kitting cell.",
  backend: {
    kind: "openvla-http",
    endpoints: ["https://vla.robots.example.com"],
    timeout_ms: 5000,
    retries: 1,
  },
  action: { dim: 7, chunk: 1 },
  dataset_statistics: { kitting_v2: { action: unnormExample } },
  default_unnorm_key: "kitting_v2",
  image: { size: 224, strategy: "resize-naive" },
};

const num = (description: string) => Type.Integer({ description });

export const CustomerModelBody = Type.Object(
  {
    id: Type.String({
      pattern: "^[a-z0-9][a-z0-9._-]{0,63}$",
      description:
        "Your model's id (lower-case letters, digits, `.`, `_`, `-`; 1..64), used as `model` in inference requests. " +
        "Unique among your models; ids of the service's models you can use are taken.",
    }),
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    backend: Type.Object(
      {
        kind: Type.Union([Type.Literal("openvla-http"), Type.Literal("kserve-v2")], {
          description:
            "`openvla-http`: OpenVLA deploy.py-compatible servers (`POST {endpoint}/act`, json_numpy). " +
            "`kserve-v2`: the Open Inference Protocol (KServe v2, Triton).",
        }),
        endpoints: Type.Array(Type.String({ maxLength: 2048 }), {
          minItems: 1,
          maxItems: 8,
          description:
            "Base URLs of interchangeable replicas. https only (http where the operator allows it), no credentials, " +
            "query or fragment; every host must resolve to public addresses only (or to a network the operator " +
            "allow-lists), checked now and again on every connection. Redirects are never followed.",
        }),
        timeout_ms: Type.Optional(num("Per call, 1..60000 (default 10000).")),
        retries: Type.Optional(num("Extra attempts on other endpoints after a failure, 0..3 (default 1).")),
        circuit: Type.Optional(
          Type.Object(
            {
              failure_threshold: Type.Optional(
                num("Consecutive failures that open an endpoint's circuit (default 3)."),
              ),
              cooldown_ms: Type.Optional(num("How long an open circuit rejects (default 5000).")),
            },
            { additionalProperties: false },
          ),
        ),
        max_response_bytes: Type.Optional(num("Largest answer accepted, 64..1048576 (default 1048576).")),
        model_name: Type.Optional(Type.String({ description: "kserve-v2: the model's name on the server." })),
        model_version: Type.Optional(Type.String({ description: "kserve-v2: a model version." })),
        image_input: Type.Optional(Type.String({ description: 'kserve-v2: image input tensor (default "image").' })),
        instruction_input: Type.Optional(
          Type.String({ description: 'kserve-v2: instruction input tensor (default "instruction").' }),
        ),
        output_name: Type.Optional(Type.String({ description: 'kserve-v2: output tensor (default "actions").' })),
        output_kind: Type.Optional(
          Type.Union([Type.Literal("actions"), Type.Literal("normalized"), Type.Literal("tokens")], {
            description: "kserve-v2: what the output holds (default actions, in robot units).",
          }),
        ),
      },
      { additionalProperties: false, description: "Where and how the model is called." },
    ),
    action: Type.Object(
      {
        dim: Type.Integer({ description: "Action dimension D, 1..64." }),
        chunk: Type.Optional(Type.Integer({ description: "Steps H per answer, 1..256 (default 1)." })),
      },
      { additionalProperties: false },
    ),
    dataset_statistics: Type.Record(Type.String(), Type.Unknown(), {
      description:
        "Inline dataset statistics keyed by unnorm key, as in OpenVLA's dataset_statistics.json " +
        "(`{key: {action: {mean, std, min, max, q01, q99, mask}}}`); each key's action dimension must equal action.dim.",
    }),
    default_unnorm_key: Type.Optional(Type.String({ description: "Used when a request names none." })),
    image: Type.Optional(
      Type.Object(
        {
          size: Type.Optional(Type.Integer({ description: "Square side in pixels, 8..512 (default 224)." })),
          width: Type.Optional(Type.Integer({ description: "8..512 (default: size)." })),
          height: Type.Optional(Type.Integer({ description: "8..512 (default: size)." })),
          strategy: Type.Optional(Type.String({ description: "resize-naive | letterbox | center-crop." })),
          crop_area: Type.Optional(Type.Number()),
        },
        {
          additionalProperties: false,
          description: "Preprocessing before the image is sent (default 224, resize-naive).",
        },
      ),
    ),
    prompt_template: Type.Optional(Type.String({ maxLength: 2000, description: "Must contain {instruction}." })),
    lowercase_instruction: Type.Optional(Type.Boolean()),
    unnormalization: Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(Type.Union([Type.Literal("bounds_q99"), Type.Literal("bounds")])),
          epsilon: Type.Optional(Type.Number()),
        },
        { additionalProperties: false },
      ),
    ),
    batching: Type.Optional(
      Type.Object(
        {
          max_batch_size: Type.Optional(num("1..64 (openvla-http: default 1, calls are single).")),
          max_wait_ms: Type.Optional(Type.Number()),
          max_queue: Type.Optional(num("1..1024 (default 256).")),
          timeout_ms: Type.Optional(num("Per request, 1..60000 (default 10000).")),
          max_concurrent_batches: Type.Optional(num("1..32 (default 8).")),
        },
        { additionalProperties: false },
      ),
    ),
  },
  {
    additionalProperties: false,
    description:
      "A model served from your own endpoints: the registry entry format of docs/models.md, with statistics inline.",
    examples: [customerModelExample],
  },
);

export type CustomerModelBodyDto = Static<typeof CustomerModelBody>;

/** POST /v1/models/{model_id}/probe: what to send with the synthetic frame. */
export const ProbeBody = Type.Object(
  {
    instruction: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1000,
        description: "The instruction sent with the frame. Default: `pick up the block`.",
      }),
    ),
    unnorm_key: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: "Which statistics un-normalize the action; default: the model's default (docs/models.md).",
      }),
    ),
  },
  { additionalProperties: false, examples: [{ instruction: "pick up the red block", unnorm_key: "bridge_orig" }] },
);

const Timing = Type.Object({
  preprocess_ms: Type.Number({ description: "Preparing the frame for the model." }),
  queue_ms: Type.Number({ description: "Waiting in the model's queue." }),
  model_ms: Type.Number({ description: "The call to your endpoint(s), retries included." }),
});

export const ProbeReportSchema = Type.Union(
  [
    Type.Object(
      {
        ok: Type.Literal(true),
        latency_ms: Type.Number({ description: "From the probe's start to the decoded action, in the service." }),
        unnorm_key: Type.String(),
        action: Type.Array(Type.Number(), { description: "The first action, un-normalized (robot units)." }),
        action_chunk: Type.Union([Type.Array(Type.Array(Type.Number())), Type.Null()], {
          description: "The whole chunk when the model returns more than one step.",
        }),
        timing: Timing,
      },
      { description: "Your endpoint answered a valid action." },
    ),
    Type.Object(
      {
        ok: Type.Literal(false),
        latency_ms: Type.Number(),
        error: Type.Object(
          {
            code: Type.String({
              description:
                "What a request naming the model would have got: model_unavailable, inference_timeout, " +
                "invalid_model_output, ... (docs/errors.md).",
            }),
            status: Type.Integer({ description: "That request's HTTP status." }),
            detail: Type.String(),
          },
          { description: "Why the endpoint's answer was not an action." },
        ),
      },
      { description: "Your endpoint did not give a usable answer." },
    ),
  ],
  {
    description:
      "What one synthetic frame (mid-grey, the model's input size) through the model found. 200 either way: the " +
      "probe worked; `ok` says whether your endpoint did.",
    examples: [
      {
        ok: true,
        latency_ms: 38.412,
        unnorm_key: "bridge_orig",
        action: [0.0012, -0.0031, 0.0008, 0.0102, -0.0054, 0.0007, 1],
        action_chunk: null,
        timing: { preprocess_ms: 0.41, queue_ms: 0.05, model_ms: 37.6 },
      },
      {
        ok: false,
        latency_ms: 2003.1,
        error: {
          code: "inference_timeout",
          status: 504,
          detail: 'Model "my-openvla-finetune" did not answer within 2000 ms.',
        },
      },
    ],
  },
);
