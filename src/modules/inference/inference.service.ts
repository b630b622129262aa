import type { Context } from "@opentelemetry/api";
import type { Registry } from "prom-client";
import type { Config } from "../../config.ts";
import { AppError, errors } from "../../platform/errors.ts";
import type { CheckResult, HealthRegistry } from "../../platform/health.ts";
import type { Lifecycle } from "../../platform/lifecycle.ts";
import { endSpan, QueueTrace, startChild } from "../../platform/tracing.ts";
import { thumbnailEmbedding } from "../context/thumbnail-embedding.ts";
import { decodeAction, unnormalize } from "../models/action-codec.ts";
import { createBackend } from "../models/backends/index.ts";
import {
  BackendGpuMetrics,
  type EndpointGpu,
  type GpuLog,
  GpuScraper,
  type GpuScrapeSettings,
} from "../models/backends/remote/gpu-metrics.ts";
import type { BackendOutput, BackendRequest, EndpointReport, ModelBackend } from "../models/backends/types.ts";
import { type DatasetStatistics, selectUnnormKey } from "../models/dataset-statistics.ts";
import { ModelStats, type ModelStatsSnapshot, type ModelStatus } from "../models/model-stats.ts";
import type { ModelDefinition, RegistryDocument } from "../models/registry.ts";
import {
  definitionFingerprint,
  loadRegistry,
  modelVisibleTo,
  RegistryError,
  renderPrompt,
} from "../models/registry.ts";
import { createEngineMetrics, type EngineMetrics } from "./engine-metrics.ts";
import { DEFAULT_IMAGE_LIMITS, type ImageLimits, prepareImage } from "./images.ts";
import { createJpegDecoder, inlineJpegDecoder, type JpegDecoder } from "./jpeg-pool.ts";
import type { NdArray } from "./ndarray.ts";
import { BatchScheduler } from "./scheduler.ts";

/** Who asks for a model (a Principal fits): decides which restricted models it may see. */
export interface ModelViewer {
  readonly customerId: string;
  readonly isSuperuser: boolean;
}

export interface InferenceRequest {
  /** Model id; the registry's default model when omitted. */
  readonly model?: string | undefined;
  /** Encoded JPEG/PNG/WebP bytes, or a uint8 HxWx3 array; exactly one. */
  readonly imageBytes?: Uint8Array | undefined;
  readonly imageArray?: NdArray | undefined;
  readonly instruction: string;
  readonly unnormKey?: string | undefined;
  /** Fair queueing key: the tenant. */
  readonly customerId: string;
  /**
   * The caller (a principal): a model restricted to other customers is 404 unknown_model for it.
   * Undefined: an internal call, no access check.
   */
  readonly viewer?: ModelViewer | undefined;
  /** Overrides the model's per-request timeout (ms). */
  readonly timeoutMs?: number | undefined;
  /**
   * Compute the `thumbnail-8x8-v1` embedding of the decoded image (consent `store_embeddings`),
   * before the pixels go to the model (a worker backend may take them).
   */
  readonly thumbnail?: boolean | undefined;
  /** The request span's Context (tracing on): image decode, queue wait and model spans go under it. */
  readonly trace?: Context | undefined;
}

/** The image as received: what context_metadata keeps about it (docs/privacy.md). */
export interface ReceivedImage {
  readonly format: "jpeg" | "png" | "webp" | "array";
  /** Bytes received: the encoded file's, or the array's (H x W x 3). */
  readonly bytes: number;
  readonly width: number;
  readonly height: number;
}

export interface InferenceResult {
  /** The first (or only) action, in robot units. */
  readonly action: number[];
  /** The whole (H, D) chunk when the model returns more than one step. */
  readonly actionChunk?: number[][];
  readonly backend: ModelBackend["kind"];
  readonly model: string;
  readonly unnormKey: string;
  readonly timing: { readonly preprocess_ms: number; readonly queue_ms: number; readonly model_ms: number };
  readonly batchSize: number;
  readonly imageSha256: string;
  readonly image: ReceivedImage;
  /** Only when asked (`thumbnail: true`): 64 float32 values, see thumbnail-embedding.ts. */
  readonly thumbnail?: Float32Array;
  /** Set for a customer-registered model (docs/models.md, "Bring your own endpoint"). */
  readonly owner?: "customer";
}

export interface ModelInfo {
  readonly id: string;
  /** operator: the registry's; customer: registered by the caller's customer (POST /v1/models). */
  readonly owner: "operator" | "customer";
  readonly description: string;
  readonly backend: ModelBackend["kind"];
  readonly status: ModelStatus;
  readonly action: { readonly dim: number; readonly chunk: number };
  readonly unnorm_keys: string[];
  readonly default_unnorm_key: string | null;
  readonly input: {
    readonly image: { readonly width: number; readonly height: number; readonly strategy: string };
    readonly image_formats: string[];
    readonly prompt_template: string;
  };
  readonly batching: { readonly max_batch_size: number; readonly max_wait_ms: number; readonly max_queue: number };
  readonly stats: ModelStatsSnapshot;
  /** Remote backends with `metrics_urls`: scraped GPU/queue values per endpoint; absent when none. */
  readonly gpu?: EndpointGpu[];
}

export const MAX_INSTRUCTION_CHARS = 1000;

export interface ModelBackendReport {
  readonly id: string;
  readonly backend: string;
  readonly status: CheckResult["status"];
  readonly detail: string | null;
  /** How long the backend's health check took. */
  readonly check_ms: number;
  readonly queue_depth: number;
  readonly max_queue: number;
  /** Recent requests (in-process window). */
  readonly latency_ms: { readonly p50: number | null; readonly p95: number | null; readonly p99: number | null };
  readonly endpoints: EndpointReport[];
}

interface LoadedModel {
  readonly def: ModelDefinition;
  /** definitionFingerprint(def): a reload keeps the model when its new definition has the same. */
  readonly fingerprint: string;
  readonly owner: "operator" | "customer";
  /** The `model` label of engine metrics: the id, or "customer" (customers' ids would be unbounded). */
  readonly label: string;
  readonly backend: ModelBackend;
  readonly scheduler: BatchScheduler<BackendRequest, BackendOutput>;
  readonly stats: ModelStats;
  readonly gpu: GpuScraper | undefined;
  status: ModelStatus;
  statusDetail: string | undefined;
  /** Requests that resolved this model and have not finished: a retired model drains them. */
  active: number;
  /** Called when `active` drops to 0 (set while the model drains). */
  idle: (() => void) | undefined;
  /** Set once `unload` began; unloading twice waits for the first. */
  closing: Promise<void> | undefined;
}

/** What a live reload did (docs/models.md, "Live reload"). */
export interface RegistryChange {
  /** New ids: built and warmed before they took traffic. */
  readonly added: string[];
  /** Ids whose definition differs: a new instance, warmed, swapped in; the old one drains. */
  readonly changed: string[];
  /** Ids no longer in the registry: 404 unknown_model from now on; their queues drain. */
  readonly removed: string[];
  /** Ids whose definition is the same: their queues, statistics and backends were not touched. */
  readonly unchanged: string[];
  readonly defaultModel: string;
  readonly previousDefaultModel: string;
  /** From the start of the reload (reading the file) to the swap. */
  readonly durationMs: number;
}

/** How long a reload waits for a new or changed model's warm-up before it refuses the reload. */
export const RELOAD_WARM_UP_TIMEOUT_MS = 120_000;

export interface EngineOptions {
  readonly imageLimits?: ImageLimits;
  /** Small model-sized JPEGs (default: decoded on the calling thread); closed with the engine. */
  readonly jpegDecoder?: JpegDecoder;
  readonly metrics?: EngineMetrics;
  /** Replace backends (tests). */
  readonly backendFactory?: (def: ModelDefinition) => ModelBackend;
  /**
   * Where `reloadRegistry` reads the registry again (createEngine: MODELS_CONFIG, or the embedded
   * defaults); throws RegistryError for an invalid one. Default: the constructor's document.
   */
  readonly registrySource?: () => RegistryDocument;
  /** Bound on a new or changed model's warm-up during a reload (default RELOAD_WARM_UP_TIMEOUT_MS). */
  readonly reloadWarmUpTimeoutMs?: number;
  /** Scrape remote backends' metrics pages (registry `metrics_urls`); off when absent or intervalMs is 0. */
  readonly gpuMetrics?: {
    readonly metrics: BackendGpuMetrics;
    readonly settings: GpuScrapeSettings;
    readonly log?: GpuLog;
  };
}

function gpuField(s: GpuScraper | undefined): { gpu?: EndpointGpu[] } {
  const gpu = s?.snapshot() ?? [];
  return gpu.length > 0 ? { gpu } : {};
}

const ms = (v: number) => Math.round(v * 1000) / 1000;

async function withTimeout(p: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`did not finish within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The inference engine: model router -> image preprocessing -> per-model batching queue ->
 * backend -> action codec. Framework-free; routes and stream handlers call `infer`.
 */
export class InferenceEngine {
  private currentDefault: string;
  /** Replaced as a whole by a reload (one synchronous swap), never edited in place. */
  private models: ReadonlyMap<string, LoadedModel> = new Map();
  /** Models a reload replaced or removed, still finishing their requests. */
  private readonly retiring = new Map<LoadedModel, Promise<void>>();
  private reloadChain: Promise<unknown> = Promise.resolve();
  private readonly reloadListeners: ((change: RegistryChange) => void)[] = [];
  private readonly registrySource: () => RegistryDocument;
  private readonly reloadWarmUpTimeoutMs: number;
  /**
   * Customer-registered models, by customer id and model id: only that customer's requests reach
   * them (`get` with its viewer), and for that customer its own model wins over a registry model of
   * the same id (registration refuses the ids it can use, so they meet only after a reload added
   * one: the customer's traffic must not move to a model it never chose). Not part of the health
   * checks: a customer's endpoint does not degrade the service's health.
   */
  private readonly customerModels = new Map<string, Map<string, LoadedModel>>();
  private readonly imageLimits: ImageLimits;
  private readonly jpegDecoder: JpegDecoder;
  private readonly metrics: EngineMetrics | undefined;
  private closed = false;

  private readonly factory: (def: ModelDefinition) => ModelBackend;
  private readonly gpuOptions: EngineOptions["gpuMetrics"];

  constructor(registry: RegistryDocument, options: EngineOptions = {}) {
    this.currentDefault = registry.defaultModel;
    this.registrySource = options.registrySource ?? (() => registry);
    this.reloadWarmUpTimeoutMs = options.reloadWarmUpTimeoutMs ?? RELOAD_WARM_UP_TIMEOUT_MS;
    this.imageLimits = options.imageLimits ?? DEFAULT_IMAGE_LIMITS;
    this.jpegDecoder = options.jpegDecoder ?? inlineJpegDecoder;
    this.metrics = options.metrics;
    this.factory = options.backendFactory ?? createBackend;
    this.gpuOptions = options.gpuMetrics;
    this.models = new Map(registry.models.map((def) => [def.id, this.load(def)]));
    this.metrics?.registryLoaded.set(Date.now() / 1000);
  }

  /** The model used when a request names none; a reload may change it. */
  get defaultModel(): string {
    return this.currentDefault;
  }

  /** Called after every successful reload, after the swap (caches of per-model data drop theirs). */
  onReload(listener: (change: RegistryChange) => void): void {
    this.reloadListeners.push(listener);
  }

  /**
   * Builds a model's backend, batching queue, stats and (remote backends with `metrics_urls`)
   * GPU scraper. The backend is not warmed: `warmUp` (or the first request) does that. `stats`:
   * a changed model's, so its request counts and latency window go on across a reload.
   */
  private load(
    def: ModelDefinition,
    options: { readonly owner?: LoadedModel["owner"]; readonly stats?: ModelStats | undefined } = {},
  ): LoadedModel {
    const backend = this.factory(def);
    const owner = options.owner ?? "operator";
    const label = owner === "customer" ? "customer" : def.id;
    const stats = options.stats ?? new ModelStats();
    const m = this.metrics;
    // The gauge is the serving instance's: a replaced one draining (and closing) must not overwrite it.
    let self: LoadedModel | undefined;
    const serving = () => self !== undefined && this.models.get(def.id) === self;
    const scheduler = new BatchScheduler<BackendRequest, BackendOutput>(
      def.id,
      def.batching,
      (items) => {
        for (const it of items) it.trace?.dispatched(items.length);
        const answered = backend.infer(items);
        if (items.some((it) => it.trace !== undefined)) {
          // Each model span ends with its own item's outcome (a backend fails items one by one).
          answered.then(
            (results) => {
              items.forEach((it, i) => {
                const r = results[i];
                it.trace?.finished(r instanceof Error ? r : undefined);
              });
            },
            (e: unknown) => {
              for (const it of items) it.trace?.finished(e);
            },
          );
        }
        return answered;
      },
      {
        // A customer model's depth is not reported: several share the label.
        onDepth: (d) => {
          if (owner === "operator" && serving()) m?.queueDepth.set({ model: label }, d);
        },
        onQueueWait: (w) => m?.queueWait.observe({ model: label }, w / 1000),
        onBatch: (size, t) => {
          stats.recordBatch(size);
          m?.batchSize.observe({ model: label }, size);
          m?.modelLatency.observe({ model: label }, t / 1000);
        },
      },
    );
    let gpu: GpuScraper | undefined;
    const g = this.gpuOptions;
    if (
      g !== undefined &&
      g.settings.intervalMs > 0 &&
      (def.backend.kind === "openvla-http" || def.backend.kind === "kserve-v2")
    ) {
      const remote = def.backend;
      const targets = remote.endpoints.flatMap((endpoint, i) => {
        const metricsUrl = remote.metricsUrls[i];
        return metricsUrl === undefined ? [] : [{ endpoint, metricsUrl, index: i }];
      });
      if (targets.length > 0) {
        gpu = new GpuScraper(def.id, targets, g.settings, g.metrics, g.log === undefined ? {} : { log: g.log });
        gpu.start();
      }
    }
    self = {
      def,
      fingerprint: definitionFingerprint(def),
      owner,
      label,
      backend,
      scheduler,
      stats,
      gpu,
      status: "loading",
      statusDetail: undefined,
      active: 0,
      idle: undefined,
      closing: undefined,
    };
    return self;
  }

  /**
   * Stops a model: its scraper, its queue (waiting requests get 503), running batches finish, backend
   * closed. A customer's model closes its backend first: its running calls end at once. By then its
   * requests have finished (it drained) or the server is stopping, and a call still running would
   * hold the drain, or the shutdown and every flush hook after it, for as long as the customer's
   * endpoint chooses not to answer.
   */
  private unload(m: LoadedModel): Promise<void> {
    m.closing ??= (async () => {
      await m.gpu?.stop();
      const backendClosed = m.owner === "customer" ? Promise.allSettled([m.backend.close()]) : undefined;
      await m.scheduler.close();
      await (backendClosed ?? Promise.allSettled([m.backend.close()]));
    })();
    return m.closing;
  }

  /**
   * Reads the registry again (`registrySource`: MODELS_CONFIG) and applies it; see `reload`. The
   * file is read inside the serialized section, so a reload queued behind another reads the newest file.
   */
  reloadRegistry(): Promise<RegistryChange> {
    return this.reload(this.registrySource);
  }

  /**
   * Applies a registry without a restart, diffing by model id. Unchanged models (same
   * definitionFingerprint) keep their instance: queue, statistics and backend untouched. New and
   * changed models are built and warmed first; then the model map and the default model are
   * swapped in one synchronous step, so every request resolves either the old registry or the new
   * one. Replaced and removed models then drain: no new request reaches them, the requests that
   * already resolved them run to completion (queued ones included), then they are closed in the
   * background. Reloads run one at a time.
   *
   * Refused, with the running registry left as it was: 422 invalid_registry (the file's problems,
   * every one), 502 model_warm_up_failed (a new or changed model's warm-up failed or timed out;
   * what was built is closed again), 503 shutting_down.
   */
  reload(next: RegistryDocument | (() => RegistryDocument)): Promise<RegistryChange> {
    const run = this.reloadChain.then(() => this.applyMetered(next));
    this.reloadChain = run.catch(() => {});
    return run;
  }

  private async applyMetered(next: RegistryDocument | (() => RegistryDocument)): Promise<RegistryChange> {
    try {
      const change = await this.apply(next);
      this.metrics?.registryReloads.inc({ outcome: "ok" });
      this.metrics?.registryLoaded.set(Date.now() / 1000);
      return change;
    } catch (e) {
      this.metrics?.registryReloads.inc({ outcome: e instanceof AppError ? e.code : "internal_error" });
      throw e;
    }
  }

  private async apply(next: RegistryDocument | (() => RegistryDocument)): Promise<RegistryChange> {
    const started = performance.now();
    if (this.closed) throw errors.shuttingDown();
    let doc: RegistryDocument;
    try {
      doc = typeof next === "function" ? next() : next;
    } catch (e) {
      if (e instanceof RegistryError) throw errors.invalidRegistry(e.problems);
      throw e;
    }
    const current = this.models;
    const added: string[] = [];
    const changed: string[] = [];
    const unchanged: string[] = [];
    const built = new Map<string, LoadedModel>();
    // A backend that cannot even be built (e.g. its ONNX file is unreadable) is a registry problem;
    // every such model is named, as the file's other problems are.
    const unbuildable: string[] = [];
    for (const def of doc.models) {
      const old = current.get(def.id);
      if (old !== undefined && old.fingerprint === definitionFingerprint(def)) {
        unchanged.push(def.id);
        continue;
      }
      (old === undefined ? added : changed).push(def.id);
      try {
        built.set(def.id, this.load(def, { stats: old?.stats }));
      } catch (e) {
        unbuildable.push(`model "${def.id}": ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (unbuildable.length > 0) {
      await Promise.all([...built.values()].map((m) => this.unload(m)));
      throw errors.invalidRegistry(unbuildable);
    }
    const problems: string[] = [];
    await Promise.all(
      [...built.values()].map(async (m) => {
        try {
          await withTimeout(m.backend.warmUp(), this.reloadWarmUpTimeoutMs);
          m.status = "ready";
        } catch (e) {
          problems.push(`model "${m.def.id}": warm-up failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }),
    );
    if (problems.length > 0 || this.closed) {
      await Promise.all([...built.values()].map((m) => this.unload(m)));
      throw this.closed ? errors.shuttingDown() : errors.modelWarmUpFailed(problems.sort());
    }
    // The swap: one synchronous step, nothing awaited between the map and the default model.
    const swapped = new Map(
      doc.models.map((def) => [def.id, built.get(def.id) ?? (current.get(def.id) as LoadedModel)]),
    );
    const previousDefaultModel = this.currentDefault;
    this.models = swapped;
    this.currentDefault = doc.defaultModel;
    const removed: string[] = [];
    for (const m of current.values()) {
      if (swapped.get(m.def.id) === m) continue;
      if (swapped.has(m.def.id)) this.metrics?.queueDepth.set({ model: m.def.id }, 0);
      else {
        removed.push(m.def.id);
        this.metrics?.queueDepth.remove({ model: m.def.id });
      }
      void this.retire(m);
    }
    const change: RegistryChange = {
      added,
      changed,
      removed,
      unchanged,
      defaultModel: doc.defaultModel,
      previousDefaultModel,
      durationMs: ms(performance.now() - started),
    };
    for (const listener of this.reloadListeners) listener(change);
    return change;
  }

  /**
   * Drains a model out of service: its requests finish, then it closes. Reloads do not wait for
   * it (background); customer model changes do (the returned promise).
   */
  private retire(m: LoadedModel): Promise<void> {
    const drained =
      m.active === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            m.idle = resolve;
          });
    const done = drained.then(() => this.unload(m));
    this.retiring.set(m, done);
    void done.finally(() => this.retiring.delete(m));
    return done;
  }

  /** Models replaced or removed by a reload that are still finishing their requests. */
  get draining(): number {
    return this.retiring.size;
  }

  /** Warms every backend; a failure marks that model `down` without stopping the others. */
  async warmUp(): Promise<void> {
    await Promise.all(
      [...this.models.values()].map(async (m) => {
        try {
          await m.backend.warmUp();
          m.status = "ready";
          m.statusDetail = undefined;
        } catch (e) {
          m.status = "down";
          m.statusDetail = e instanceof Error ? e.message : String(e);
        }
      }),
    );
  }

  /** Every model id; with a viewer, only those it may use (docs/models.md, "Access"). */
  modelIds(viewer?: ModelViewer): string[] {
    const all = [...this.models.values()];
    return (viewer === undefined ? all : all.filter((m) => modelVisibleTo(m.def, viewer))).map((m) => m.def.id);
  }

  /**
   * The one place a model id is resolved. With a viewer (the request's principal), a model
   * restricted to other customers answers exactly like an unknown one: 404 unknown_model
   * listing only the ids the viewer may use, so its existence is not revealed.
   */
  private get(id: string | undefined, viewer?: ModelViewer): LoadedModel {
    const wanted = id ?? this.defaultModel;
    const own = viewer === undefined ? undefined : this.customerModels.get(viewer.customerId)?.get(wanted);
    if (own !== undefined) return own;
    const m = this.models.get(wanted);
    if (m !== undefined && (viewer === undefined || modelVisibleTo(m.def, viewer))) return m;
    const ids = this.modelIds(viewer);
    if (viewer !== undefined) ids.push(...this.customerModelIds(viewer.customerId).filter((x) => !ids.includes(x)));
    throw errors.unknownModel(wanted, ids);
  }

  /** Would `infer` resolve this id for this viewer now (no 404)? One or two map lookups. */
  serves(id: string, viewer: ModelViewer): boolean {
    if (this.customerModels.get(viewer.customerId)?.has(id) === true) return true;
    const m = this.models.get(id);
    return m !== undefined && modelVisibleTo(m.def, viewer);
  }

  /** The ids of the models a customer registered that this instance has loaded. */
  customerModelIds(customerId: string): string[] {
    return [...(this.customerModels.get(customerId)?.keys() ?? [])];
  }

  /**
   * Serves (or replaces) a customer's registered model; only that customer's requests reach it.
   * A replaced model drains like one a reload replaced: the requests that already resolved it
   * (queued ones included) finish, then its backend closes.
   */
  async putCustomerModel(customerId: string, def: ModelDefinition): Promise<void> {
    if (this.closed) throw errors.shuttingDown();
    let own = this.customerModels.get(customerId);
    if (own === undefined) {
      own = new Map();
      this.customerModels.set(customerId, own);
    }
    const old = own.get(def.id);
    own.set(def.id, this.load(def, { owner: "customer" }));
    if (old !== undefined) await this.retire(old);
  }

  /** Stops serving a customer's model (drained like a replaced one); false when it was not loaded. */
  async removeCustomerModel(customerId: string, id: string): Promise<boolean> {
    const own = this.customerModels.get(customerId);
    const m = own?.get(id);
    if (own === undefined || m === undefined) return false;
    own.delete(id);
    if (own.size === 0) this.customerModels.delete(customerId);
    await this.retire(m);
    return true;
  }

  /**
   * The model's dataset statistics (safety's OOD classifier reads the action moments). With a
   * viewer: resolved as its requests resolve the id (its customer's own model first; 404
   * unknown_model for a model it may not use).
   */
  statistics(id: string, viewer?: ModelViewer): DatasetStatistics {
    return this.get(id, viewer).def.statistics;
  }

  /** With a viewer: 404 unknown_model for a model it may not use. */
  describe(id: string, viewer?: ModelViewer): ModelInfo {
    return this.info(this.get(id, viewer));
  }

  private info(m: LoadedModel): ModelInfo {
    const d = m.def;
    return {
      id: d.id,
      owner: m.owner,
      description: d.description,
      backend: m.backend.kind,
      status: m.status,
      action: { ...d.action },
      unnorm_keys: [...d.statistics.keys],
      default_unnorm_key:
        d.defaultUnnormKey ?? (d.statistics.keys.length === 1 ? (d.statistics.keys[0] as string) : null),
      input: {
        image: { width: d.image.width, height: d.image.height, strategy: d.image.strategy },
        image_formats: ["jpeg", "png", "webp", "uint8 HxWx3 array"],
        prompt_template: d.promptTemplate,
      },
      batching: {
        max_batch_size: d.batching.maxBatchSize,
        max_wait_ms: d.batching.maxWaitMs,
        max_queue: d.batching.maxQueue,
      },
      stats: m.stats.snapshot(m.scheduler.depth),
      ...gpuField(m.gpu),
    };
  }

  /**
   * With a viewer: only the models it may use, its customer's own registered ones last (a registry
   * model of the same id as one of them is not listed: that id is the customer's model for it).
   */
  list(viewer?: ModelViewer): ModelInfo[] {
    const own = viewer === undefined ? [] : this.customerModelIds(viewer.customerId);
    const registry = this.modelIds(viewer)
      .filter((id) => !own.includes(id))
      .map((id) => this.describe(id));
    return [...registry, ...own.map((id) => this.describe(id, viewer))];
  }

  async infer(req: InferenceRequest): Promise<InferenceResult> {
    const started = performance.now();
    const m = this.get(req.model, req.viewer);
    // Counted from the moment the id resolved: a reload that replaces this model lets it finish.
    m.active += 1;
    try {
      const result = await this.run(m, req);
      m.stats.recordRequest(true, performance.now() - started);
      this.metrics?.requests.inc({ model: m.label, backend: m.backend.kind, outcome: "ok" });
      if (m.status === "loading" || m.status === "down") m.status = "ready";
      return result;
    } catch (e) {
      // Client mistakes (4xx: bad image, unknown unnorm_key) are not model errors.
      const serverSide = !(e instanceof AppError) || e.status >= 500;
      m.stats.recordRequest(!serverSide, performance.now() - started, serverSide);
      const code = e instanceof AppError ? e.code : "internal_error";
      this.metrics?.requests.inc({ model: m.label, backend: m.backend.kind, outcome: code });
      throw e;
    } finally {
      m.active -= 1;
      if (m.active === 0) m.idle?.();
    }
  }

  private async run(m: LoadedModel, req: InferenceRequest): Promise<InferenceResult> {
    if (this.closed) throw errors.shuttingDown();
    const def = m.def;
    if (typeof req.instruction !== "string" || req.instruction.trim().length === 0) {
      throw errors.validation([{ in: "body", path: "/instruction", message: "must be a non-empty string" }]);
    }
    if (req.instruction.length > MAX_INSTRUCTION_CHARS) {
      throw errors.validation([
        { in: "body", path: "/instruction", message: `must be at most ${MAX_INSTRUCTION_CHARS} characters` },
      ]);
    }
    const { key: unnormKey, action: normStats } = selectUnnormKey(def.statistics, req.unnormKey, def.defaultUnnormKey);
    if ((req.imageBytes === undefined) === (req.imageArray === undefined)) {
      throw errors.invalidImage("Send exactly one image: encoded bytes or a uint8 HxWx3 array.");
    }
    const t0 = performance.now();
    const decodeSpan = startChild(req.trace, "image.decode");
    let image: Awaited<ReturnType<typeof prepareImage>>;
    try {
      image = await prepareImage(
        req.imageBytes !== undefined ? { bytes: req.imageBytes } : { array: req.imageArray as NdArray },
        def.image,
        this.imageLimits,
        this.jpegDecoder,
      );
    } catch (e) {
      endSpan(decodeSpan, e);
      throw e;
    }
    const preprocessMs = performance.now() - t0;
    // Sizes and formats only, never pixels or bytes.
    endSpan(decodeSpan, undefined, {
      "vla.image.format": image.source.format,
      "vla.image.width": image.source.width,
      "vla.image.height": image.source.height,
      "vla.image.path": image.path,
    });
    this.metrics?.imageDecodes.inc({ path: image.path });
    const thumbnail = req.thumbnail === true ? thumbnailEmbedding(image.data, image.width, image.height) : undefined;
    const received: ReceivedImage = {
      format: image.source.format,
      bytes: req.imageBytes !== undefined ? req.imageBytes.byteLength : (req.imageArray as NdArray).data.byteLength,
      width: image.source.width,
      height: image.source.height,
    };
    const queued =
      req.trace === undefined
        ? undefined
        : new QueueTrace(req.trace, { "vla.model": def.id, "vla.backend": m.backend.kind });
    let scheduled: Awaited<ReturnType<typeof m.scheduler.submit>>;
    try {
      scheduled = await m.scheduler.submit(
        req.customerId,
        {
          modelId: def.id,
          image,
          prompt: renderPrompt(def, req.instruction),
          instruction: req.instruction,
          unnormKey,
          ...(queued === undefined ? {} : { trace: queued }),
        },
        req.timeoutMs ?? def.batching.timeoutMs,
      );
    } catch (e) {
      queued?.finished(e); // a timeout or overload ends the queue span with it
      throw e;
    }
    queued?.finished();
    const chunk = this.toActions(def, scheduled.output, normStats);
    return {
      action: chunk[0] as number[],
      ...(chunk.length > 1 ? { actionChunk: chunk } : {}),
      backend: m.backend.kind,
      model: def.id,
      unnormKey,
      timing: { preprocess_ms: ms(preprocessMs), queue_ms: ms(scheduled.queueMs), model_ms: ms(scheduled.modelMs) },
      batchSize: scheduled.batchSize,
      imageSha256: image.sha256,
      image: received,
      ...(thumbnail === undefined ? {} : { thumbnail }),
      ...(m.owner === "customer" ? { owner: "customer" as const } : {}),
    };
  }

  /** Backend output -> (H, D) robot actions, validated: dimensions, finiteness, token range. */
  private toActions(
    def: ModelDefinition,
    out: BackendOutput,
    stats: ReturnType<typeof selectUnnormKey>["action"],
  ): number[][] {
    const { dim, chunk } = def.action;
    let rows: number[][];
    if (out.kind === "tokens") {
      if (out.tokens.length !== dim * chunk) {
        throw errors.invalidModelOutput(`Model produced ${out.tokens.length} tokens; expected ${dim * chunk}.`);
      }
      rows = Array.from({ length: chunk }, (_, i) =>
        decodeAction(out.tokens.slice(i * dim, (i + 1) * dim), stats, def.unnormalization),
      );
    } else {
      if (out.actions.length < 1 || out.actions.length > chunk || out.actions.some((r) => r.length !== dim)) {
        throw errors.invalidModelOutput(
          `Model produced an action chunk of shape (${out.actions.length}, ${out.actions[0]?.length ?? 0}); expected (${chunk}, ${dim}).`,
        );
      }
      rows =
        out.kind === "normalized"
          ? out.actions.map((r) => unnormalize(r, stats, def.unnormalization))
          : out.actions.map((r) => {
              if (!r.every(Number.isFinite)) throw errors.invalidModelOutput("Model produced a non-finite action.");
              return [...r];
            });
    }
    return rows;
  }

  /** The `models` health check: ok when all are ready, down when all are down, degraded otherwise. */
  async healthCheck(): Promise<CheckResult> {
    const reports = await Promise.all(
      [...this.models.values()].map(async (m) => {
        let h: CheckResult;
        try {
          h = await m.backend.health();
        } catch (e) {
          h = { status: "down", detail: e instanceof Error ? e.message : String(e) };
        }
        // A model still warming up stays `loading` until its backend reports ok.
        if (h.status === "ok") m.status = "ready";
        else if (m.status !== "loading") m.status = h.status === "degraded" ? "degraded" : "down";
        return { id: m.def.id, status: m.status, detail: h.detail };
      }),
    );
    const ready = reports.filter((r) => r.status === "ready").length;
    const down = reports.filter((r) => r.status === "down").length;
    const detail = reports.map((r) => `${r.id}: ${r.status}${r.detail ? ` (${r.detail})` : ""}`).join("; ");
    if (ready === reports.length) return { status: "ok", detail };
    return { status: down === reports.length ? "down" : "degraded", detail };
  }

  /**
   * Each model for the deep health route: its backend's health (timed), the endpoints' circuits of
   * a remote backend, queue depth and the recent latency window.
   */
  async backendReports(): Promise<ModelBackendReport[]> {
    return Promise.all(
      [...this.models.values()].map(async (m) => {
        const t0 = performance.now();
        let h: CheckResult;
        try {
          h = await m.backend.health();
        } catch (e) {
          h = { status: "down", detail: e instanceof Error ? e.message : String(e) };
        }
        const snap = m.stats.snapshot(m.scheduler.depth);
        return {
          id: m.def.id,
          backend: m.backend.kind,
          status: h.status,
          detail: h.detail ?? null,
          check_ms: Math.round((performance.now() - t0) * 100) / 100,
          queue_depth: snap.queue_depth,
          max_queue: m.def.batching.maxQueue,
          latency_ms: snap.latency_ms,
          endpoints: m.backend.endpoints?.() ?? [],
        };
      }),
    );
  }

  /** The `queue` health check: degraded when any queue is more than 80% full. */
  queueCheck(): CheckResult {
    const parts: string[] = [];
    let degraded = false;
    for (const m of this.models.values()) {
      const depth = m.scheduler.depth;
      if (depth > 0.8 * m.def.batching.maxQueue) degraded = true;
      parts.push(`${m.def.id}: ${depth}/${m.def.batching.maxQueue}`);
    }
    return { status: degraded ? "degraded" : "ok", detail: parts.join("; ") };
  }

  /**
   * Stops accepting work, fails waiting requests, lets running batches finish, closes backends
   * (draining ones too). A reload in progress is refused (503) and its new models closed.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.reloadChain;
    // Draining models stop like the others: what still waits in their queues gets 503.
    const own = [...this.customerModels.values()].flatMap((models) => [...models.values()]);
    this.customerModels.clear();
    await Promise.all([...this.models.values(), ...own, ...this.retiring.keys()].map((m) => this.unload(m)));
    await this.jpegDecoder.close();
  }
}

interface GpuLogger {
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * Builds the engine from config: registry (MODELS_CONFIG or embedded defaults; an invalid
 * registry throws RegistryError and stops startup), metrics, `models` and `queue` health
 * checks, background warm-up, and backend shutdown on the lifecycle's flush phase.
 */
export function createEngine(
  config: { readonly models: Omit<Config["models"], "byom"> },
  platform: { metrics: Registry; health: HealthRegistry; lifecycle: Lifecycle; log?: GpuLogger },
  options: Pick<EngineOptions, "backendFactory"> = {},
): InferenceEngine {
  const registry = loadRegistry(config.models.configPath);
  const log = platform.log;
  const engine = new InferenceEngine(registry, {
    registrySource: () => loadRegistry(config.models.configPath),
    gpuMetrics: {
      metrics: new BackendGpuMetrics(platform.metrics),
      settings: config.models.backendMetrics,
      ...(log === undefined ? {} : { log: (fields: Record<string, unknown>, msg: string) => log.warn(fields, msg) }),
    },
    imageLimits: { maxEncodedBytes: config.models.imageMaxBytes, maxPixels: config.models.imageMaxPixels },
    jpegDecoder: createJpegDecoder(config.models.jpegDecodeThreads),
    metrics: createEngineMetrics(platform.metrics),
    ...options,
  });
  platform.health.register("models", () => engine.healthCheck());
  platform.health.register("queue", async () => engine.queueCheck());
  const warming = config.models.warmUp ? engine.warmUp() : Promise.resolve();
  platform.lifecycle.onFlush("inference-engine", async () => {
    await warming;
    await engine.close();
  });
  return engine;
}
