import { readFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { errors } from "../../../platform/errors.ts";
import type { CheckResult } from "../../../platform/health.ts";
import { MIN_ACTION_TOKEN, N_BINS } from "../action-codec.ts";
import { type HashWordsTokenizer, tokenize } from "../tokenizer.ts";
import type { BackendRequest, BackendResult, ModelBackend } from "./types.ts";

/**
 * An ONNX model directory (docs/models.md, "Model directory"):
 *   model.onnx               the network, batch dimension dynamic
 *   config.json              names the inputs/outputs and the output kind (parsed here)
 *   dataset_statistics.json  un-normalization statistics (read by the registry)
 */
export interface OnnxModelConfig {
  readonly image: { readonly name: string; readonly height: number; readonly width: number };
  readonly instruction: { readonly name: string; readonly tokenizer: HashWordsTokenizer };
  readonly output:
    | { readonly name: string; readonly kind: "action_token_logits"; readonly actionDim: number; readonly bins: number }
    | {
        readonly name: string;
        readonly kind: "normalized_actions";
        readonly actionDim: number;
        readonly chunk: number;
      };
  readonly datasetStatistics: string | undefined;
  readonly defaultUnnormKey: string | undefined;
}

export class ModelDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelDirError";
  }
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new ModelDirError(`${where}: expected an object`);
  return v as Record<string, unknown>;
}
function str(v: unknown, where: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > 256) throw new ModelDirError(`${where}: expected a name`);
  return v;
}
function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ModelDirError(`${where}: expected an integer in ${min}..${max}`);
  }
  return v;
}

export function parseOnnxModelConfig(doc: unknown, where = "config.json"): OnnxModelConfig {
  const c = obj(doc, where);
  if (c.format !== "vla-onnx/1") throw new ModelDirError(`${where}.format: expected "vla-onnx/1"`);
  const inputs = obj(c.inputs, `${where}.inputs`);
  const image = obj(inputs.image, `${where}.inputs.image`);
  if (image.dtype !== "uint8" || image.layout !== "NHWC") {
    throw new ModelDirError(`${where}.inputs.image: only dtype "uint8" with layout "NHWC" is supported`);
  }
  const instruction = obj(inputs.instruction, `${where}.inputs.instruction`);
  const tok = obj(instruction.tokenizer, `${where}.inputs.instruction.tokenizer`);
  if (tok.kind !== "hash-words")
    throw new ModelDirError(`${where}.inputs.instruction.tokenizer.kind: expected "hash-words"`);
  const output = obj(c.output, `${where}.output`);
  const outName = str(output.name, `${where}.output.name`);
  const actionDim = int(output.action_dim, `${where}.output.action_dim`, 1, 64);
  let out: OnnxModelConfig["output"];
  if (output.kind === "action_token_logits") {
    const bins = int(output.bins ?? N_BINS, `${where}.output.bins`, N_BINS, N_BINS);
    out = { name: outName, kind: "action_token_logits", actionDim, bins };
  } else if (output.kind === "normalized_actions") {
    out = {
      name: outName,
      kind: "normalized_actions",
      actionDim,
      chunk: int(output.chunk ?? 1, `${where}.output.chunk`, 1, 256),
    };
  } else {
    throw new ModelDirError(`${where}.output.kind: expected "action_token_logits" or "normalized_actions"`);
  }
  return {
    image: {
      name: str(image.name, `${where}.inputs.image.name`),
      height: int(image.height, `${where}.inputs.image.height`, 1, 4096),
      width: int(image.width, `${where}.inputs.image.width`, 1, 4096),
    },
    instruction: {
      name: str(instruction.name, `${where}.inputs.instruction.name`),
      tokenizer: {
        kind: "hash-words",
        vocabSize: int(tok.vocab_size, `${where}.inputs.instruction.tokenizer.vocab_size`, 2, 10_000_000),
        maxLength: int(tok.max_length, `${where}.inputs.instruction.tokenizer.max_length`, 1, 4096),
      },
    },
    output: out,
    datasetStatistics:
      c.dataset_statistics === undefined ? undefined : str(c.dataset_statistics, `${where}.dataset_statistics`),
    defaultUnnormKey:
      c.default_unnorm_key === undefined || c.default_unnorm_key === null
        ? undefined
        : str(c.default_unnorm_key, `${where}.default_unnorm_key`),
  };
}

export function loadOnnxModelConfig(dir: string): OnnxModelConfig {
  const file = path.join(dir, "config.json");
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ModelDirError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseOnnxModelConfig(doc, file);
}

export interface OnnxBackendOptions {
  readonly modelId: string;
  readonly modelDir: string;
  readonly config: OnnxModelConfig;
  readonly executionProviders: readonly string[];
  readonly intraOpThreads: number;
  readonly interOpThreads: number;
}

/** argmax over each dimension's bins -> token id 31744 + k. NaN logits make the item invalid. */
export function logitsToTokens(logits: Float32Array, offset: number, dim: number, bins: number): number[] {
  const tokens: number[] = [];
  for (let d = 0; d < dim; d++) {
    let best = 0;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < bins; k++) {
      const v = logits[offset + d * bins + k] as number;
      if (Number.isNaN(v)) throw errors.invalidModelOutput(`Model produced NaN logits at dimension ${d}.`);
      if (v > bestValue) {
        bestValue = v;
        best = k;
      }
    }
    tokens.push(MIN_ACTION_TOKEN + best);
  }
  return tokens;
}

/** onnxruntime-node in process; one session, true batched runs over the dynamic batch dimension. */
export class OnnxBackend implements ModelBackend {
  readonly kind = "onnx" as const;
  private readonly options: OnnxBackendOptions;
  private session: ort.InferenceSession | undefined;
  private loading: Promise<ort.InferenceSession> | undefined;
  private lastError: string | undefined;
  /** Reused input buffers by byte length: a fresh multi-MB allocation per batch costs more than the run. */
  private readonly scratch = new Map<number, Uint8Array[]>();

  constructor(options: OnnxBackendOptions) {
    this.options = options;
  }

  private load(): Promise<ort.InferenceSession> {
    this.loading ??= ort.InferenceSession.create(path.join(this.options.modelDir, "model.onnx"), {
      executionProviders: [...this.options.executionProviders],
      intraOpNumThreads: this.options.intraOpThreads,
      interOpNumThreads: this.options.interOpThreads,
      graphOptimizationLevel: "all",
    }).then(
      (s) => {
        const { image, instruction, output } = this.options.config;
        for (const name of [image.name, instruction.name]) {
          if (!s.inputNames.includes(name)) throw new ModelDirError(`model.onnx has no input "${name}"`);
        }
        if (!s.outputNames.includes(output.name)) throw new ModelDirError(`model.onnx has no output "${output.name}"`);
        this.session = s;
        return s;
      },
      (e: unknown) => {
        this.loading = undefined;
        this.lastError = e instanceof Error ? e.message : String(e);
        throw e;
      },
    );
    return this.loading;
  }

  async warmUp(): Promise<void> {
    await this.load();
  }

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    const { config, modelId } = this.options;
    let session: ort.InferenceSession;
    try {
      session = this.session ?? (await this.load());
    } catch (e) {
      throw errors.modelUnavailable(modelId, "the ONNX session could not be created", e);
    }
    const b = batch.length;
    const { height: h, width: w } = config.image;
    const pixels = h * w * 3;
    const images = this.scratch.get(b * pixels)?.pop() ?? new Uint8Array(b * pixels);
    const seq = config.instruction.tokenizer.maxLength;
    const tokens = new BigInt64Array(b * seq);
    batch.forEach((req, i) => {
      if (req.image.width !== w || req.image.height !== h) {
        throw errors.internal(new Error(`image ${req.image.width}x${req.image.height} does not match model ${w}x${h}`));
      }
      images.set(req.image.data, i * pixels);
      tokens.set(tokenize(req.prompt, config.instruction.tokenizer), i * seq);
    });
    const feeds = {
      [config.image.name]: new ort.Tensor("uint8", images, [b, h, w, 3]),
      [config.instruction.name]: new ort.Tensor("int64", tokens, [b, seq]),
    };
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await session.run(feeds, [config.output.name]);
    } catch (e) {
      throw errors.modelUnavailable(modelId, "the ONNX run failed", e);
    } finally {
      const free = this.scratch.get(images.byteLength) ?? [];
      if (free.length < 4) free.push(images);
      this.scratch.set(images.byteLength, free);
    }
    const out = result[config.output.name];
    if (out === undefined || out.type !== "float32") {
      throw errors.invalidModelOutput(`ONNX output "${config.output.name}" is missing or not float32.`);
    }
    const data = out.data as Float32Array;
    const o = config.output;
    if (o.kind === "action_token_logits") {
      const expected = [b, o.actionDim, o.bins];
      if (out.dims.join() !== expected.join()) {
        throw errors.invalidModelOutput(
          `ONNX output shape [${out.dims.join(", ")}], expected [${expected.join(", ")}].`,
        );
      }
      const per = o.actionDim * o.bins;
      return batch.map((_, i) => {
        try {
          return { kind: "tokens", tokens: logitsToTokens(data, i * per, o.actionDim, o.bins) };
        } catch (e) {
          return e as Error;
        }
      });
    }
    const expected = [b, o.chunk, o.actionDim];
    if (out.dims.join() !== expected.join()) {
      throw errors.invalidModelOutput(`ONNX output shape [${out.dims.join(", ")}], expected [${expected.join(", ")}].`);
    }
    const per = o.chunk * o.actionDim;
    return batch.map((_, i) => ({
      kind: "normalized",
      actions: Array.from({ length: o.chunk }, (_r, t) =>
        Array.from(data.subarray(i * per + t * o.actionDim, i * per + (t + 1) * o.actionDim)),
      ),
    }));
  }

  async health(): Promise<CheckResult> {
    if (this.session !== undefined)
      return { status: "ok", detail: `onnxruntime ${this.options.executionProviders.join(",")}` };
    if (this.lastError !== undefined) return { status: "down", detail: this.lastError };
    return { status: "degraded", detail: "loading" };
  }

  async close(): Promise<void> {
    const loading = this.loading;
    this.loading = undefined;
    const s = this.session ?? (await loading?.catch(() => undefined));
    this.session = undefined;
    await s?.release();
  }
}
