import { encodeModel, type Node, type Tensor, TensorDataType } from "./onnx-proto.ts";

/**
 * demo-vla-tiny: a small but real policy network, built deterministically.
 *
 *   image  uint8 [B, 224, 224, 3] -> float -> 4x4 grid average pooling (two ReduceMeans) -> [B, 48] / 255 - 0.5
 *   tokens int64 [B, 16]          -> embedding [512, 32] -> mean over tokens -> [B, 32]
 *   concat [B, 80] -> Gemm 80x64 + ReLU -> Gemm 64x(7*256) -> reshape [B, 7, 256] logits
 *
 * Bin k of dimension d corresponds to action token id 31744 + k. The weights come from a
 * seeded PRNG, so `scripts/make-demo-model.ts` always writes the same bytes.
 */
export const DEMO = {
  seed: 20261126,
  imageSize: 224,
  grid: 4,
  vocabSize: 512,
  embedDim: 32,
  maxTokens: 16,
  hidden: 64,
  actionDim: 7,
  bins: 256,
} as const;

export const DEMO_IMAGE_FEATURES = DEMO.grid * DEMO.grid * 3;
export const DEMO_FEATURES = DEMO_IMAGE_FEATURES + DEMO.embedDim;

/** mulberry32: a tiny, well-known 32-bit PRNG. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface DemoWeights {
  readonly embedding: Float32Array; // [vocab, embed]
  readonly w1: Float32Array; // [features, hidden]
  readonly b1: Float32Array; // [hidden]
  readonly w2: Float32Array; // [hidden, dim*bins]
  readonly b2: Float32Array; // [dim*bins]
}

export function demoWeights(seed: number = DEMO.seed): DemoWeights {
  const rand = mulberry32(seed);
  const normal = () => {
    const u = Math.max(rand(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
  const fill = (n: number, scale: number) => Float32Array.from({ length: n }, () => normal() * scale);
  const embedding = fill(DEMO.vocabSize * DEMO.embedDim, 1);
  embedding.fill(0, 0, DEMO.embedDim); // id 0 = padding
  return {
    embedding,
    w1: fill(DEMO_FEATURES * DEMO.hidden, 2 / Math.sqrt(DEMO_FEATURES)),
    b1: fill(DEMO.hidden, 0.1),
    w2: fill(DEMO.hidden * DEMO.actionDim * DEMO.bins, 2 / Math.sqrt(DEMO.hidden)),
    b2: gripperOpenClosed(fill(DEMO.actionDim * DEMO.bins, 0.1)),
  };
}

/**
 * The gripper is absolute (RLDS: 0 = closed, 1 = open) and passes through un-normalized, so a
 * policy trained on such data only ever picks bins in [0, 1]. The untrained demo would pick
 * any bin; its gripper bins below 0 (bins 128..255: token ids count down from +1) get a
 * bias no logit can beat, so its answers respect the convention the safety gate checks.
 */
function gripperOpenClosed(b2: Float32Array): Float32Array {
  const gripper = (DEMO.actionDim - 1) * DEMO.bins;
  b2.fill(-100, gripper + DEMO.bins / 2, gripper + DEMO.bins);
  return b2;
}

export const f32 = (name: string, dims: number[], data: Float32Array): Tensor => ({
  name,
  dataType: TensorDataType.FLOAT,
  dims,
  raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
});
export const i64 = (name: string, values: number[]): Tensor => ({
  name,
  dataType: TensorDataType.INT64,
  dims: [values.length],
  raw: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer),
});

/**
 * The demo's front end, shared with the bench model (src/modules/models/bench-model.ts):
 * uint8 image [B, 224, 224, 3] + int64 tokens [B, 16] -> "features" float [B, DEMO_FEATURES].
 */
export function featureNodes(): Node[] {
  return [
    {
      opType: "Cast",
      inputs: ["image"],
      outputs: ["image_f"],
      attributes: [{ name: "to", int: TensorDataType.FLOAT }],
    },
    // Grid pooling in two reductions whose inner axes stay contiguous (cache-friendly at any
    // batch size): rows of each cell first, then columns.
    { opType: "Reshape", inputs: ["image_f", "rows_shape"], outputs: ["image_rows"] },
    {
      opType: "ReduceMean",
      inputs: ["image_rows"],
      outputs: ["row_means"],
      attributes: [
        { name: "axes", ints: [2] },
        { name: "keepdims", int: 0 },
      ],
    },
    { opType: "Reshape", inputs: ["row_means", "cols_shape"], outputs: ["image_cols"] },
    {
      opType: "ReduceMean",
      inputs: ["image_cols"],
      outputs: ["pooled"],
      attributes: [
        { name: "axes", ints: [3] },
        { name: "keepdims", int: 0 },
      ],
    },
    { opType: "Reshape", inputs: ["pooled", "flat_image_shape"], outputs: ["pooled_flat"] },
    { opType: "Mul", inputs: ["pooled_flat", "inv255"], outputs: ["pooled_scaled"] },
    { opType: "Sub", inputs: ["pooled_scaled", "half"], outputs: ["image_features"] },
    {
      opType: "Gather",
      inputs: ["embedding", "tokens"],
      outputs: ["token_vectors"],
      attributes: [{ name: "axis", int: 0 }],
    },
    {
      opType: "ReduceMean",
      inputs: ["token_vectors"],
      outputs: ["text_features"],
      attributes: [
        { name: "axes", ints: [1] },
        { name: "keepdims", int: 0 },
      ],
    },
    {
      opType: "Concat",
      inputs: ["image_features", "text_features"],
      outputs: ["features"],
      attributes: [{ name: "axis", int: 1 }],
    },
  ];
}

/** The initializers `featureNodes` reads (the embedding is [DEMO.vocabSize, DEMO.embedDim]). */
export function featureInitializers(embedding: Float32Array): Tensor[] {
  const cell = DEMO.imageSize / DEMO.grid;
  return [
    i64("rows_shape", [-1, DEMO.grid, cell, DEMO.imageSize * 3]),
    i64("cols_shape", [-1, DEMO.grid, DEMO.grid, cell, 3]),
    i64("flat_image_shape", [-1, DEMO_IMAGE_FEATURES]),
    f32("inv255", [], Float32Array.of(1 / 255)),
    f32("half", [], Float32Array.of(0.5)),
    f32("embedding", [DEMO.vocabSize, DEMO.embedDim], embedding),
  ];
}

/** The ONNX ModelProto bytes of demo-vla-tiny (opset 13, IR version 7). */
export function buildDemoModel(weights: DemoWeights = demoWeights()): Uint8Array {
  const nodes: Node[] = [
    ...featureNodes(),
    { opType: "Gemm", inputs: ["features", "w1", "b1"], outputs: ["hidden_pre"] },
    { opType: "Relu", inputs: ["hidden_pre"], outputs: ["hidden"] },
    { opType: "Gemm", inputs: ["hidden", "w2", "b2"], outputs: ["logits_flat"] },
    { opType: "Reshape", inputs: ["logits_flat", "logits_shape"], outputs: ["action_logits"] },
  ];
  return encodeModel({
    irVersion: 7,
    opset: 13,
    producer: "vla-inference-api scripts/make-demo-model.ts",
    graphName: "demo_vla_tiny",
    docString:
      "Tiny deterministic VLA demo policy: grid-pooled image + hashed-word embedding -> MLP -> 7x256 action-token logits.",
    nodes,
    initializers: [
      ...featureInitializers(weights.embedding),
      f32("w1", [DEMO_FEATURES, DEMO.hidden], weights.w1),
      f32("b1", [DEMO.hidden], weights.b1),
      f32("w2", [DEMO.hidden, DEMO.actionDim * DEMO.bins], weights.w2),
      f32("b2", [DEMO.actionDim * DEMO.bins], weights.b2),
      i64("logits_shape", [-1, DEMO.actionDim, DEMO.bins]),
    ],
    inputs: [
      { name: "image", elemType: TensorDataType.UINT8, shape: ["batch", DEMO.imageSize, DEMO.imageSize, 3] },
      { name: "tokens", elemType: TensorDataType.INT64, shape: ["batch", DEMO.maxTokens] },
    ],
    outputs: [{ name: "action_logits", elemType: TensorDataType.FLOAT, shape: ["batch", DEMO.actionDim, DEMO.bins] }],
  });
}

/** The model directory's config.json for the demo (see docs/models.md, "Model directory"). */
export function demoConfig(): Record<string, unknown> {
  return {
    format: "vla-onnx/1",
    name: "demo-vla-tiny",
    description: "Tiny deterministic demo policy produced by scripts/make-demo-model.ts; not a trained robot policy.",
    inputs: {
      image: { name: "image", dtype: "uint8", layout: "NHWC", height: DEMO.imageSize, width: DEMO.imageSize },
      instruction: {
        name: "tokens",
        tokenizer: { kind: "hash-words", vocab_size: DEMO.vocabSize, max_length: DEMO.maxTokens },
      },
    },
    output: { name: "action_logits", kind: "action_token_logits", action_dim: DEMO.actionDim, bins: DEMO.bins },
    dataset_statistics: "dataset_statistics.json",
    default_unnorm_key: "bridge_orig",
  };
}
