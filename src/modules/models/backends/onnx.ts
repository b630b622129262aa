import { readFileSync } from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { errors } from "../../../platform/errors.ts";
import type { CheckResult } from "../../../platform/health.ts";
import { MIN_ACTION_TOKEN, N_BINS } from "../action-codec.ts";
import { type HashWordsTokenizer, tokenize } from "../tokenizer.ts";
import type { OnnxRunMessage, OnnxWorkerData, OnnxWorkerReply } from "./onnx-worker.ts";
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
  /**
   * Run the session on its own worker thread. onnxruntime-node's `run` is synchronous (deferred
   * by a setImmediate only), so on the main thread every batch stalls the event loop for its
   * whole duration. Worth it for any model whose batch takes more than about a millisecond; the
   * tiny demo model runs faster than the thread hop costs.
   */
  readonly runInWorker?: boolean;
}

/** One run's output, wherever the session lives; `images` is the input buffer, handed back for reuse. */
interface RunOutput {
  readonly outputType: string;
  readonly data: Float32Array | undefined;
  readonly dims: readonly number[];
  readonly images: Uint8Array;
}

/** Where the ONNX session lives: on the event loop's thread, or on a worker thread. */
interface SessionHost {
  load(): Promise<void>;
  /** Rejects on a failed run; `images` may be transferred away and comes back in the output. */
  run(b: number, images: Uint8Array, tokens: BigInt64Array): Promise<RunOutput>;
  readonly loaded: boolean;
  release(): Promise<void>;
}

function checkNames(inputs: readonly string[], outputs: readonly string[], c: OnnxModelConfig): string | undefined {
  for (const name of [c.image.name, c.instruction.name]) {
    if (!inputs.includes(name)) return `model.onnx has no input "${name}"`;
  }
  if (!outputs.includes(c.output.name)) return `model.onnx has no output "${c.output.name}"`;
  return undefined;
}

/** The session on the calling thread (the default: cheapest for tiny models). */
class InThreadHost implements SessionHost {
  private session: ort.InferenceSession | undefined;
  private loading: Promise<ort.InferenceSession> | undefined;
  private readonly o: OnnxBackendOptions;
  constructor(o: OnnxBackendOptions) {
    this.o = o;
  }
  get loaded(): boolean {
    return this.session !== undefined;
  }
  async load(): Promise<void> {
    this.loading ??= ort.InferenceSession.create(path.join(this.o.modelDir, "model.onnx"), {
      executionProviders: [...this.o.executionProviders],
      intraOpNumThreads: this.o.intraOpThreads,
      interOpNumThreads: this.o.interOpThreads,
      graphOptimizationLevel: "all",
    }).then(
      (s) => {
        const problem = checkNames(s.inputNames, s.outputNames, this.o.config);
        if (problem !== undefined) throw new ModelDirError(problem);
        this.session = s;
        return s;
      },
      (e: unknown) => {
        this.loading = undefined;
        throw e;
      },
    );
    await this.loading;
  }
  async run(b: number, images: Uint8Array, tokens: BigInt64Array): Promise<RunOutput> {
    const { config } = this.o;
    const session = this.session;
    if (session === undefined) throw new Error("the ONNX session is not loaded");
    const { height: h, width: w } = config.image;
    const feeds = {
      [config.image.name]: new ort.Tensor("uint8", images, [b, h, w, 3]),
      [config.instruction.name]: new ort.Tensor("int64", tokens, [b, config.instruction.tokenizer.maxLength]),
    };
    const result = await session.run(feeds, [config.output.name]);
    const out = result[config.output.name];
    return {
      outputType: out?.type ?? "missing",
      data: out?.type === "float32" ? (out.data as Float32Array) : undefined,
      dims: out?.dims ?? [],
      images,
    };
  }
  async release(): Promise<void> {
    const loading = this.loading;
    this.loading = undefined;
    const s = this.session ?? (await loading?.catch(() => undefined));
    this.session = undefined;
    await s?.release();
  }
}

type RunReply = Extract<OnnxWorkerReply, { type: "result" | "error" }>;

/** The session on a worker thread (onnx-worker.ts); input buffers are transferred, not copied. */
class WorkerHost implements SessionHost {
  private worker: Worker | undefined;
  private loading: Promise<Worker> | undefined;
  private closing = false;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (r: RunReply) => void; reject: (e: unknown) => void }>();
  private readonly o: OnnxBackendOptions;
  constructor(o: OnnxBackendOptions) {
    this.o = o;
  }
  get loaded(): boolean {
    return this.worker !== undefined;
  }
  async load(): Promise<void> {
    this.loading ??= new Promise<Worker>((resolve, reject) => {
      const { config, modelDir } = this.o;
      const data: OnnxWorkerData = {
        modelPath: path.join(modelDir, "model.onnx"),
        executionProviders: [...this.o.executionProviders],
        intraOpThreads: this.o.intraOpThreads,
        interOpThreads: this.o.interOpThreads,
        imageName: config.image.name,
        tokensName: config.instruction.name,
        outputName: config.output.name,
        height: config.image.height,
        width: config.image.width,
        seq: config.instruction.tokenizer.maxLength,
      };
      const w = new Worker(new URL("./onnx-worker.ts", import.meta.url), { workerData: data });
      w.unref();
      let ready = false;
      const fail = (e: Error) => {
        if (this.worker === w) this.worker = undefined;
        this.loading = undefined;
        for (const c of this.calls.values()) c.reject(e);
        this.calls.clear();
        if (!ready) reject(e);
      };
      w.on("message", (m: OnnxWorkerReply) => {
        if (m.type === "ready") {
          ready = true;
          this.worker = w;
          resolve(w);
        } else if (m.type === "load-error") {
          fail(m.modelDir ? new ModelDirError(m.message) : new Error(m.message));
          void w.terminate();
        } else {
          const call = this.calls.get(m.id);
          if (call === undefined) return;
          this.calls.delete(m.id);
          // An idle worker must not keep the process alive.
          if (this.calls.size === 0) w.unref();
          call.resolve(m);
        }
      });
      w.on("error", (e) => fail(e instanceof Error ? e : new Error(String(e))));
      w.on("exit", (code) => {
        if (!this.closing) fail(new Error(`the ONNX worker exited (code ${code})`));
      });
    });
    await this.loading;
  }
  async run(b: number, images: Uint8Array, tokens: BigInt64Array): Promise<RunOutput> {
    const w = this.worker;
    if (w === undefined) throw new Error("the ONNX worker is not running");
    const reply = await new Promise<RunReply>((resolve, reject) => {
      const id = this.nextId++;
      if (this.calls.size === 0) w.ref();
      this.calls.set(id, { resolve, reject });
      const message: OnnxRunMessage = { id, b, images, tokens };
      w.postMessage(message, [images.buffer as ArrayBuffer, tokens.buffer as ArrayBuffer]);
    });
    if (reply.type === "error") {
      throw Object.assign(new Error(reply.message), { images: reply.images });
    }
    return { outputType: reply.outputType, data: reply.data, dims: reply.dims, images: reply.images };
  }
  async release(): Promise<void> {
    this.closing = true;
    const loading = this.loading;
    this.loading = undefined;
    const w = this.worker ?? (await loading?.catch(() => undefined));
    this.worker = undefined;
    for (const c of this.calls.values()) c.reject(new Error("the ONNX backend is closing"));
    this.calls.clear();
    await w?.terminate();
  }
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

/**
 * onnxruntime-node in process; one session, true batched runs over the dynamic batch dimension,
 * on the event loop's thread or (`runInWorker`) on a worker thread of its own.
 */
export class OnnxBackend implements ModelBackend {
  readonly kind = "onnx" as const;
  private readonly options: OnnxBackendOptions;
  private readonly host: SessionHost;
  private lastError: string | undefined;
  /** Reused input buffers by byte length: a fresh multi-MB allocation per batch costs more than the run. */
  private readonly scratch = new Map<number, Uint8Array[]>();

  constructor(options: OnnxBackendOptions) {
    this.options = options;
    this.host = options.runInWorker === true ? new WorkerHost(options) : new InThreadHost(options);
  }

  private async load(): Promise<void> {
    try {
      await this.host.load();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      throw e;
    }
  }

  async warmUp(): Promise<void> {
    await this.load();
  }

  private recycle(images: Uint8Array | undefined): void {
    if (images === undefined || images.byteLength === 0) return;
    const free = this.scratch.get(images.byteLength) ?? [];
    if (free.length < 4) free.push(images);
    this.scratch.set(images.byteLength, free);
  }

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    const { config, modelId } = this.options;
    try {
      if (!this.host.loaded) await this.load();
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
    let out: RunOutput;
    try {
      out = await this.host.run(b, images, tokens);
    } catch (e) {
      this.recycle((e as { images?: Uint8Array }).images ?? (this.options.runInWorker === true ? undefined : images));
      throw errors.modelUnavailable(modelId, "the ONNX run failed", e);
    }
    this.recycle(out.images);
    if (out.data === undefined) {
      throw errors.invalidModelOutput(`ONNX output "${config.output.name}" is missing or not float32.`);
    }
    const data = out.data;
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
    const where = this.options.runInWorker === true ? ", worker thread" : "";
    if (this.host.loaded)
      return { status: "ok", detail: `onnxruntime ${this.options.executionProviders.join(",")}${where}` };
    if (this.lastError !== undefined) return { status: "down", detail: this.lastError };
    return { status: "degraded", detail: "loading" };
  }

  async close(): Promise<void> {
    await this.host.release();
  }
}
