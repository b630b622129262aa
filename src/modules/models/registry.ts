import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { EgressGuard } from "../../platform/egress.ts";
import { type ImageSpec, PREPROCESS_STRATEGIES, type PreprocessStrategy } from "../inference/images.ts";
import type { UnnormalizeOptions } from "./action-codec.ts";
import { MOCK_OUTPUTS, type MockOutput } from "./backends/mock.ts";
import { loadOnnxModelConfig, type OnnxModelConfig } from "./backends/onnx.ts";
import {
  actionDim,
  type DatasetStatistics,
  loadDatasetStatistics,
  parseDatasetStatistics,
} from "./dataset-statistics.ts";

/**
 * The model registry: which models this instance serves and how. Loaded from a JSON file
 * (MODELS_CONFIG) or the embedded defaults below; see docs/models.md for the format. Every
 * entry is validated at startup and an invalid one stops the process with a message naming
 * the model and the field.
 */
export const OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:";

export interface BatchingSettings {
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  readonly maxQueue: number;
  readonly timeoutMs: number;
  readonly maxConcurrentBatches: number;
}

export interface CircuitSettings {
  /** Consecutive failures that open an endpoint's circuit. */
  readonly failureThreshold: number;
  /** How long an open circuit rejects before one trial request (half-open). */
  readonly cooldownMs: number;
}

export interface RemoteSettings {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  /** Extra attempts on other endpoints after a failure. */
  readonly retries: number;
  readonly circuit: CircuitSettings;
  readonly maxResponseBytes: number;
  /**
   * Per endpoint (same order as `endpoints`): the backend's Prometheus page to scrape for GPU
   * and queue metrics (Triton: http://host:8002/metrics), or undefined.
   */
  readonly metricsUrls: readonly (string | undefined)[];
  /**
   * Customer-registered models only (docs/models.md, "Bring your own endpoint"): every connection
   * passes this SSRF guard. Undefined for the operator's registry models.
   */
  readonly egress?: EgressGuard;
}

export type BackendSettings =
  | { readonly kind: "mock"; readonly latencyMs: number; readonly perItemMs: number; readonly output: MockOutput }
  | {
      readonly kind: "onnx";
      readonly modelDir: string;
      readonly executionProviders: readonly string[];
      readonly intraOpThreads: number;
      readonly interOpThreads: number;
      readonly runInWorker: boolean;
      readonly onnx: OnnxModelConfig;
    }
  | ({ readonly kind: "openvla-http" } & RemoteSettings)
  | ({
      readonly kind: "kserve-v2";
      readonly modelName: string;
      readonly modelVersion: string | undefined;
      readonly imageInput: string;
      readonly instructionInput: string;
      readonly outputName: string;
      readonly outputKind: "actions" | "normalized" | "tokens";
    } & RemoteSettings);

export interface ModelDefinition {
  readonly id: string;
  readonly description: string;
  readonly backend: BackendSettings;
  readonly action: { readonly dim: number; readonly chunk: number };
  readonly statistics: DatasetStatistics;
  readonly defaultUnnormKey: string | undefined;
  readonly image: ImageSpec;
  readonly promptTemplate: string;
  readonly lowercaseInstruction: boolean;
  readonly unnormalization: Required<UnnormalizeOptions>;
  readonly batching: BatchingSettings;
  /**
   * Customers (ids) allowed to use the model; undefined: public. A restricted model is invisible
   * to every other customer (404 unknown_model); superusers see every model (docs/models.md).
   */
  readonly accessCustomers: ReadonlySet<string> | undefined;
}

/** May this caller (a principal) use the model? Superusers may use every model. */
export function modelVisibleTo(
  def: Pick<ModelDefinition, "accessCustomers">,
  viewer: { readonly customerId: string; readonly isSuperuser: boolean },
): boolean {
  return def.accessCustomers === undefined || viewer.isSuperuser || def.accessCustomers.has(viewer.customerId);
}

export class RegistryError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid model registry:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "RegistryError";
    this.problems = problems;
  }
}

/** The project root (models/ paths in the embedded defaults are relative to it). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Registered when MODELS_CONFIG is not set. */
export const EMBEDDED_REGISTRY = {
  default_model: "mock-openvla-7b",
  models: [
    {
      id: "mock-openvla-7b",
      description:
        "Mock with OpenVLA-7B's interface: deterministic action tokens through the real codec and OpenVLA statistics. Not a policy.",
      backend: { kind: "mock", latency_ms: 0 },
      action: { dim: 7, chunk: 1 },
      dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
      // Two keys: without a default, a client that names none (the stock openpi client on the
      // bare URI) could not use the default model at all.
      default_unnorm_key: "bridge_orig",
      image: { size: 224, strategy: "resize-naive" },
      prompt_template: OPENVLA_PROMPT,
      lowercase_instruction: true,
      batching: { max_batch_size: 16, max_wait_ms: 2 },
    },
    {
      id: "demo-vla-tiny",
      description: "Tiny real ONNX network (grid-pooled image + hashed-word embedding -> MLP -> 7x256 logits), CPU.",
      backend: { kind: "onnx", model_dir: "models/demo-vla-tiny" },
      action: { dim: 7, chunk: 1 },
      image: { size: 224, strategy: "resize-naive" },
      prompt_template: OPENVLA_PROMPT,
      lowercase_instruction: true,
      batching: { max_batch_size: 16, max_wait_ms: 3 },
    },
    {
      id: "mock-pi0",
      description:
        "Mock with pi0's output: a smooth, deterministic 10-step chunk of continuous normalized actions, un-normalized with openpi-style quantile statistics (synthetic). Not a policy.",
      backend: { kind: "mock", latency_ms: 0, output: "trajectory" },
      action: { dim: 7, chunk: 10 },
      dataset_statistics: "models/mock-pi0/dataset_statistics.json",
      default_unnorm_key: "synthetic_delta_ee",
      // openpi clients resize with padding; pi0 takes the prompt as given.
      image: { size: 224, strategy: "letterbox" },
      prompt_template: "{instruction}",
      lowercase_instruction: false,
      // openpi's quantile normalization: (x + 1) / 2 * (q99 - q01 + 1e-6) + q01 on every dimension.
      unnormalization: { mode: "bounds_q99", epsilon: 1e-6 },
      batching: { max_batch_size: 16, max_wait_ms: 2 },
    },
    {
      id: "tabletop-policy",
      description:
        "Behaviour-cloned policy of the simulated tabletop (docs/sim.md): a small CNN conditioned on the instruction; OpenVLA-style action-token logits, decoded and un-normalized exactly like OpenVLA's (unnorm key sim_tabletop). Trained by scripts/train_tabletop.py.",
      backend: { kind: "onnx", model_dir: "models/tabletop-policy" },
      action: { dim: 7, chunk: 1 },
      image: { size: 224, strategy: "resize-naive" },
      // Trained on the bare instruction (the hash-words tokenizer keeps 16 words).
      prompt_template: "{instruction}",
      lowercase_instruction: true,
      batching: { max_batch_size: 16, max_wait_ms: 2 },
    },
    {
      id: "tabletop-policy-chunk",
      description:
        "The tabletop policy's chunk head: 8 future normalized actions (pi0-style), un-normalized with the same statistics; for the chunk paths of /v1/stream and openpi.",
      backend: { kind: "onnx", model_dir: "models/tabletop-policy-chunk" },
      action: { dim: 7, chunk: 8 },
      image: { size: 224, strategy: "resize-naive" },
      prompt_template: "{instruction}",
      lowercase_instruction: true,
      batching: { max_batch_size: 16, max_wait_ms: 2 },
    },
  ],
} as const;

class FieldError extends Error {}

type Obj = Record<string, unknown>;

function asObj(v: unknown, field: string): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new FieldError(`${field}: expected an object`);
  return v as Obj;
}
function optObj(v: unknown, field: string): Obj {
  return v === undefined ? {} : asObj(v, field);
}
function int(o: Obj, key: string, field: string, fallback: number | undefined, min: number, max: number): number {
  const v = o[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new FieldError(`${field}.${key}: expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}
function num(o: Obj, key: string, field: string, fallback: number, min: number, max: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw new FieldError(`${field}.${key}: expected a number in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}
function str(o: Obj, key: string, field: string, fallback?: string): string {
  const v = o[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== "string" || v.length === 0) throw new FieldError(`${field}.${key}: expected a non-empty string`);
  return v;
}
function bool(o: Obj, key: string, field: string, fallback: boolean): boolean {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new FieldError(`${field}.${key}: expected true or false`);
  return v;
}

function parseRemote(b: Obj): RemoteSettings {
  const endpoints = b.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0 || endpoints.length > 64) {
    throw new FieldError("backend.endpoints: expected 1..64 base URLs");
  }
  const urls = endpoints.map((e, i) => {
    try {
      const u = new URL(String(e));
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("protocol");
      return u.toString().replace(/\/+$/, "");
    } catch {
      throw new FieldError(`backend.endpoints[${i}]: not an http(s) URL: ${JSON.stringify(e)}`);
    }
  });
  const circuit = optObj(b.circuit, "backend.circuit");
  let metricsUrls: (string | undefined)[] = urls.map(() => undefined);
  if (b.metrics_urls !== undefined) {
    const list = b.metrics_urls;
    if (!Array.isArray(list) || list.length !== urls.length) {
      throw new FieldError(
        "backend.metrics_urls: expected one entry per endpoint (a Prometheus metrics URL such as Triton's http://host:8002/metrics, or null)",
      );
    }
    metricsUrls = list.map((e, i) => {
      if (e === null) return undefined;
      try {
        const u = new URL(String(e));
        if (typeof e !== "string" || (u.protocol !== "http:" && u.protocol !== "https:")) throw new Error("protocol");
        return u.toString();
      } catch {
        throw new FieldError(`backend.metrics_urls[${i}]: not an http(s) URL or null`);
      }
    });
  }
  return {
    endpoints: urls,
    metricsUrls,
    timeoutMs: int(b, "timeout_ms", "backend", 10_000, 1, 600_000),
    retries: int(b, "retries", "backend", 1, 0, 10),
    circuit: {
      failureThreshold: int(circuit, "failure_threshold", "backend.circuit", 3, 1, 1000),
      cooldownMs: int(circuit, "cooldown_ms", "backend.circuit", 5_000, 1, 3_600_000),
    },
    maxResponseBytes: int(b, "max_response_bytes", "backend", 1024 * 1024, 64, 256 * 1024 * 1024),
  };
}

function parseBackend(v: unknown, baseDir: string): BackendSettings {
  const b = asObj(v, "backend");
  switch (b.kind) {
    case "mock": {
      const output = str(b, "output", "backend", "tokens");
      if (!(MOCK_OUTPUTS as readonly string[]).includes(output)) {
        throw new FieldError(`backend.output: expected ${MOCK_OUTPUTS.map((o) => `"${o}"`).join(" or ")}`);
      }
      return {
        kind: "mock",
        latencyMs: num(b, "latency_ms", "backend", 0, 0, 60_000),
        perItemMs: num(b, "per_item_ms", "backend", 0, 0, 60_000),
        output: output as MockOutput,
      };
    }
    case "onnx": {
      const modelDir = path.resolve(baseDir, str(b, "model_dir", "backend"));
      if (!existsSync(path.join(modelDir, "model.onnx"))) {
        throw new FieldError(`backend.model_dir: ${modelDir}/model.onnx does not exist`);
      }
      let onnx: OnnxModelConfig;
      try {
        onnx = loadOnnxModelConfig(modelDir);
      } catch (e) {
        throw new FieldError(`backend.model_dir: ${e instanceof Error ? e.message : String(e)}`);
      }
      const eps = b.execution_providers ?? ["cpu"];
      if (!Array.isArray(eps) || eps.length === 0 || !eps.every((x) => typeof x === "string")) {
        throw new FieldError(
          'backend.execution_providers: expected an array of names such as ["cpu"] or ["cuda", "cpu"]',
        );
      }
      return {
        kind: "onnx",
        modelDir,
        executionProviders: eps as string[],
        intraOpThreads: int(b, "intra_op_threads", "backend", 1, 0, 256),
        interOpThreads: int(b, "inter_op_threads", "backend", 1, 0, 256),
        runInWorker: bool(b, "run_in_worker", "backend", false),
        onnx,
      };
    }
    case "openvla-http":
      return { kind: "openvla-http", ...parseRemote(b) };
    case "kserve-v2": {
      const outputKind = b.output_kind ?? "actions";
      if (outputKind !== "actions" && outputKind !== "normalized" && outputKind !== "tokens") {
        throw new FieldError('backend.output_kind: expected "actions", "normalized" or "tokens"');
      }
      return {
        kind: "kserve-v2",
        ...parseRemote(b),
        modelName: str(b, "model_name", "backend"),
        modelVersion: b.model_version === undefined ? undefined : str(b, "model_version", "backend"),
        imageInput: str(b, "image_input", "backend", "image"),
        instructionInput: str(b, "instruction_input", "backend", "instruction"),
        outputName: str(b, "output_name", "backend", "actions"),
        outputKind,
      };
    }
    default:
      throw new FieldError(
        `backend.kind: expected "mock", "onnx", "openvla-http" or "kserve-v2", got ${JSON.stringify(b.kind)}`,
      );
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `access: {"customers": [uuid, ...]}`; absent: public. */
function parseAccess(v: unknown): ReadonlySet<string> | undefined {
  if (v === undefined) return undefined;
  const a = asObj(v, "access");
  for (const key of Object.keys(a)) {
    if (key !== "customers") throw new FieldError(`access.${key}: unknown field (only "customers")`);
  }
  const list = a.customers;
  if (!Array.isArray(list)) throw new FieldError("access.customers: expected an array of customer ids (uuid)");
  if (list.length === 0) {
    throw new FieldError("access.customers: is empty (no customer could use the model; omit access to make it public)");
  }
  const ids = new Set<string>();
  list.forEach((c, i) => {
    if (typeof c !== "string" || !UUID.test(c)) {
      throw new FieldError(`access.customers[${i}]: expected a customer id (uuid), got ${JSON.stringify(c)}`);
    }
    ids.add(c.toLowerCase());
  });
  return ids;
}

/**
 * Validates one registry entry (paths relative to `baseDir`); throws an Error whose message is
 * "field: problem". Customer-registered models (customer-models.ts) pass through here too.
 */
export function parseModel(v: unknown, baseDir: string): ModelDefinition {
  const m = asObj(v, "model");
  const id = str(m, "id", "");
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(id)) throw new FieldError("id: lower-case letters, digits, . _ - (1..64)");
  const backend = parseBackend(m.backend, baseDir);
  const action = asObj(m.action, "action");
  const dim = int(action, "dim", "action", undefined, 1, 64);
  const chunk = int(action, "chunk", "action", 1, 1, 256);

  let statistics: DatasetStatistics;
  const statsField = m.dataset_statistics ?? (backend.kind === "onnx" ? backend.onnx.datasetStatistics : undefined);
  try {
    if (typeof statsField === "string") {
      const base = backend.kind === "onnx" && m.dataset_statistics === undefined ? backend.modelDir : baseDir;
      statistics = loadDatasetStatistics(path.resolve(base, statsField));
    } else if (statsField !== undefined) statistics = parseDatasetStatistics(statsField, "dataset_statistics");
    else throw new Error("required (a path to dataset_statistics.json or the statistics inline)");
  } catch (e) {
    throw new FieldError(`dataset_statistics: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const key of statistics.keys) {
    if (actionDim(statistics, key) !== dim) {
      throw new FieldError(
        `dataset_statistics.${key}: action dimension ${actionDim(statistics, key)} != action.dim ${dim}`,
      );
    }
  }
  const defaultKeyRaw = m.default_unnorm_key ?? (backend.kind === "onnx" ? backend.onnx.defaultUnnormKey : undefined);
  const defaultUnnormKey = defaultKeyRaw === undefined || defaultKeyRaw === null ? undefined : String(defaultKeyRaw);
  if (defaultUnnormKey !== undefined && !statistics.entries.has(defaultUnnormKey)) {
    throw new FieldError(`default_unnorm_key: "${defaultUnnormKey}" is not one of ${statistics.keys.join(", ")}`);
  }

  const img = optObj(m.image, "image");
  const size = int(img, "size", "image", 224, 8, 2048);
  const strategy = str(img, "strategy", "image", "resize-naive");
  if (!(PREPROCESS_STRATEGIES as readonly string[]).includes(strategy)) {
    throw new FieldError(`image.strategy: expected one of ${PREPROCESS_STRATEGIES.join(", ")}`);
  }
  const image: ImageSpec = {
    width: int(img, "width", "image", size, 8, 2048),
    height: int(img, "height", "image", size, 8, 2048),
    strategy: strategy as PreprocessStrategy,
    cropArea: num(img, "crop_area", "image", 0.9, 0.1, 1),
  };
  if (backend.kind === "onnx") {
    const o = backend.onnx;
    if (o.image.width !== image.width || o.image.height !== image.height) {
      throw new FieldError(
        `image: ${image.width}x${image.height} differs from the model's ${o.image.width}x${o.image.height}`,
      );
    }
    const outDim = o.output.actionDim;
    if (outDim !== dim) throw new FieldError(`action.dim: ${dim} differs from the ONNX output's action_dim ${outDim}`);
    const outChunk = o.output.kind === "normalized_actions" ? o.output.chunk : 1;
    if (outChunk !== chunk)
      throw new FieldError(`action.chunk: ${chunk} differs from the ONNX output's chunk ${outChunk}`);
  }
  const promptTemplate = str(m, "prompt_template", "", OPENVLA_PROMPT);
  if (!promptTemplate.includes("{instruction}")) throw new FieldError("prompt_template: must contain {instruction}");
  const un = optObj(m.unnormalization, "unnormalization");
  const mode = str(un, "mode", "unnormalization", "bounds_q99");
  if (mode !== "bounds_q99" && mode !== "bounds")
    throw new FieldError('unnormalization.mode: "bounds_q99" or "bounds"');
  const bt = optObj(m.batching, "batching");
  const remote = backend.kind === "openvla-http" || backend.kind === "kserve-v2";
  return {
    id,
    description: typeof m.description === "string" ? m.description : "",
    backend,
    action: { dim, chunk },
    statistics,
    defaultUnnormKey,
    image,
    promptTemplate,
    lowercaseInstruction: bool(m, "lowercase_instruction", "", true),
    unnormalization: { mode, epsilon: num(un, "epsilon", "unnormalization", 0, 0, 1) },
    batching: {
      // OpenVLA's reference server cannot batch: forward one request per item, several at once.
      maxBatchSize: int(bt, "max_batch_size", "batching", backend.kind === "openvla-http" ? 1 : 8, 1, 256),
      maxWaitMs: num(bt, "max_wait_ms", "batching", 2, 0, 1000),
      maxQueue: int(bt, "max_queue", "batching", 256, 1, 100_000),
      timeoutMs: int(bt, "timeout_ms", "batching", 10_000, 1, 600_000),
      maxConcurrentBatches: int(bt, "max_concurrent_batches", "batching", remote ? 8 : 1, 1, 1024),
    },
    accessCustomers: parseAccess(m.access),
  };
}

export interface RegistryDocument {
  readonly defaultModel: string;
  readonly models: readonly ModelDefinition[];
}

/** Validates a registry document; relative paths resolve against `baseDir`. */
export function parseRegistry(doc: unknown, baseDir: string, source = "model registry"): RegistryDocument {
  const problems: string[] = [];
  if (doc === null || typeof doc !== "object" || !Array.isArray((doc as Obj).models)) {
    throw new RegistryError([`${source}: expected {"models": [...]}`]);
  }
  const list = (doc as Obj).models as unknown[];
  if (list.length === 0) problems.push(`${source}: "models" is empty`);
  const models: ModelDefinition[] = [];
  const seen = new Set<string>();
  list.forEach((entry, i) => {
    const id =
      entry !== null && typeof entry === "object" && typeof (entry as Obj).id === "string" ? (entry as Obj).id : "?";
    try {
      const def = parseModel(entry, baseDir);
      if (seen.has(def.id)) throw new FieldError("id: duplicate model id");
      seen.add(def.id);
      models.push(def);
    } catch (e) {
      problems.push(`${source}: model "${String(id)}" (models[${i}]): ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  const dm = (doc as Obj).default_model;
  const defaultModel = typeof dm === "string" ? dm : models[0]?.id;
  // Checked against every id the file lists, valid entries or not, so a file with several mistakes
  // gets them all at once (a live reload answers the whole list) without blaming the default for
  // an entry that is already reported.
  const listed = new Set(list.map((e) => (e !== null && typeof e === "object" ? (e as Obj).id : undefined)));
  if (dm !== undefined || list.length > 0) {
    if (defaultModel === undefined ? problems.length === 0 : !listed.has(defaultModel)) {
      problems.push(`${source}: default_model ${JSON.stringify(dm)} is not a registered model id`);
    }
  }
  const def = models.find((m) => m.id === defaultModel);
  if (def?.accessCustomers !== undefined) {
    problems.push(
      `${source}: default_model "${def.id}" is restricted (access.customers); the default model must be public`,
    );
  }
  if (problems.length > 0) throw new RegistryError(problems);
  return { defaultModel: defaultModel as string, models };
}

/** Reads MODELS_CONFIG (paths relative to the file) or returns the embedded defaults. */
export function loadRegistry(configPath: string | undefined): RegistryDocument {
  if (configPath === undefined) return parseRegistry(EMBEDDED_REGISTRY, PROJECT_ROOT, "embedded defaults");
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(configPath, "utf8"));
  } catch (e) {
    throw new RegistryError([`${configPath}: ${e instanceof Error ? e.message : String(e)}`]);
  }
  return parseRegistry(doc, path.dirname(path.resolve(configPath)), configPath);
}

/**
 * A stable text of a parsed definition (object keys sorted, maps and sets as sorted lists): two
 * definitions with the same fingerprint serve identically. A live reload compares them to tell a
 * changed model from an unchanged one; the parsed form (not the file's text) is compared, so
 * reordering keys or spelling out a default changes nothing, while new dataset statistics on disk
 * behind the same path do count as a change.
 */
export function definitionFingerprint(def: ModelDefinition): string {
  return createHash("sha256")
    .update(JSON.stringify(canonical(def)))
    .digest("hex");
}

function canonical(v: unknown): unknown {
  if (v === undefined || typeof v === "function") return null;
  if (typeof v === "bigint") return v.toString();
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Map) {
    return [...v.entries()]
      .map(([k, x]) => [String(k), canonical(x)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  if (v instanceof Set) return [...v].map((x) => JSON.stringify(canonical(x))).sort();
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return v.map(canonical);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) out[k] = canonical((v as Record<string, unknown>)[k]);
  return out;
}

/** Renders the prompt: the template with the (lower-cased, per OpenVLA) instruction. */
export function renderPrompt(
  def: Pick<ModelDefinition, "promptTemplate" | "lowercaseInstruction">,
  instruction: string,
): string {
  const text = def.lowercaseInstruction ? instruction.toLowerCase() : instruction;
  return def.promptTemplate.split("{instruction}").join(text);
}
