import { hash, randomUUID } from "node:crypto";
import type { Context, SpanContext } from "@opentelemetry/api";
import { Counter, type Registry } from "prom-client";
import type { Principal } from "../../platform/auth.ts";
import type { AppError } from "../../platform/errors.ts";
import type { Pseudonymizer } from "../../platform/pseudonym.ts";
import { endSpan, spanContextOf, startChild } from "../../platform/tracing.ts";
import type { ContextRecorder } from "../context/context-recorder.ts";
import type { UploadBody } from "../context/image-uploads.ts";
import type { RobotState, SafetyResult } from "../safety/types.ts";
import type { InferenceEngine, InferenceRequest, InferenceResult } from "./inference.service.ts";
import type { InferenceLogEntry, InferenceSource } from "./inference-logs.repo.ts";
import { instructionKey } from "./instruction-key.ts";
import { withKeyDefaults } from "./key-defaults.ts";

/** What every entry point (REST, /act, streams) hands over after parsing its own format. */
export interface RunInput {
  readonly model?: string | undefined;
  readonly unnormKey?: string | undefined;
  readonly instruction: string;
  readonly robotId?: string | undefined;
  readonly image: Pick<InferenceRequest, "imageBytes" | "imageArray">;
  /** The robot's state from the request (safety: workspace and collision need `ee_position`). */
  readonly robotState?: RobotState | undefined;
  /**
   * The previous action sent to this robot as the caller tracks it (streams keep it per session);
   * `null` = none. Left undefined, the safety gate looks it up per (customer, robot).
   */
  readonly previousAction?: readonly number[] | null | undefined;
  /**
   * Applied to the decoded action before safety evaluation (streams: smoothing and chunk
   * aggregation). Safety then judges, and may clamp, what it returns.
   */
  readonly postprocess?: ((decoded: DecodedAction) => DecodedAction) | undefined;
  /**
   * A split experiment's choice made once for a whole session (streams, openpi: `model` is then the
   * variant's): the request is tagged with it and not routed again.
   */
  readonly experiment?: ExperimentAssignment | undefined;
}

export interface DecodedAction {
  readonly action: readonly number[];
  readonly actionChunk?: readonly (readonly number[])[] | undefined;
}

/** What the safety gate is asked to judge. */
export interface SafetyCheck {
  readonly customerId: string;
  readonly robotId: string | undefined;
  readonly inferenceId: string;
  readonly modelId: string;
  readonly unnormKey: string;
  readonly decoded: DecodedAction;
  readonly robotState?: RobotState | undefined;
  readonly previousAction?: readonly number[] | null | undefined;
  /** What `admit` returned (e.g. state it prefetched while the model ran). */
  readonly admission?: unknown;
}

/** The safety gate's verdict: the safe action to send and the response's `safety` field. */
export interface SafetyOutcome {
  readonly action: readonly number[];
  readonly actionChunk?: readonly (readonly number[])[] | undefined;
  readonly safety: SafetyResult;
}

/**
 * Every action passes through one gate before it leaves (REST, /act, streams, openpi).
 * `admit` runs while the model runs (its lookups stay off the critical path) and rejects with
 * `robot_stopped` (409) for a robot under emergency stop: the model's output is then discarded.
 * Its result is handed to `check` as `admission`.
 */
export interface SafetyGate {
  admit(customerId: string, robotId: string | undefined, wantPrevious: boolean): Promise<unknown>;
  check(input: SafetyCheck): Promise<SafetyOutcome>;
  /**
   * The verdict `check` would give, without its side effects (no incidents, metrics, emergency stop
   * or remembered action): shadow candidates are judged with it. The previous action is the
   * request's (`previousAction`) or the one `admit` prefetched; the store is not read again (the
   * served action has replaced it by then). Gates without it leave candidates `not_evaluated`.
   */
  judge?(input: SafetyCheck): Promise<SafetyResult>;
}

/** Which split experiment and variant served a request: the REST `experiment` field, /act's `VLA-Experiment`. */
export interface ExperimentTag {
  readonly id: string;
  readonly variant: string;
}

/** A running split experiment's choice for one request (src/modules/experiments). */
export interface ExperimentAssignment extends ExperimentTag {
  /** The variant's model: serves the request. */
  readonly model: string;
}

/** What the experiments of a customer say about one request. */
export interface ExperimentPlan {
  /** Set when a split experiment runs and the request (and its key) named no model. */
  readonly assignment?: ExperimentAssignment | undefined;
  /** Set when a shadow experiment runs and sampled this request: its candidate model. */
  readonly shadow?: { readonly experimentId: string; readonly model: string } | undefined;
}

/** One sampled request handed to the shadow queue after its answer was made. */
export interface ShadowJob {
  readonly experimentId: string;
  readonly candidateModel: string;
  readonly inferenceId: string;
  readonly principal: Principal;
  readonly robotId: string | undefined;
  readonly instruction: string;
  /** Null when the recording policy keeps no instruction hash. */
  readonly instructionKey: string | null;
  readonly unnormKey: string | undefined;
  /** The request's image (arrays copied before the served model could take their buffer). */
  readonly image: RunInput["image"];
  readonly robotState?: RobotState | undefined;
  readonly previousAction?: readonly number[] | null | undefined;
  /** What the safety gate's `admit` returned for the served request (its previous action). */
  readonly admission: unknown;
  readonly servedModel: string;
  readonly servedUnnormKey: string;
  readonly servedAction: readonly number[];
  readonly servedSafetyStatus: string;
}

/**
 * The experiments of a customer as the runner asks them (src/modules/experiments). `plan` is
 * synchronous when cached (the usual case); it never fails (a failed lookup: no experiment).
 * `shadow` only enqueues: the candidate runs later, off the request path.
 */
export interface ExperimentGate {
  plan(
    viewer: Principal,
    robotId: string | undefined,
    routable: boolean,
  ): ExperimentPlan | undefined | Promise<ExperimentPlan | undefined>;
  shadow(job: ShadowJob): void;
}

export interface CallContext {
  readonly principal: Principal;
  readonly source: InferenceSource;
  /** Milliseconds since the request arrived (the response's total_ms). */
  readonly elapsedMs: () => number;
  /** The request span's Context (tracing on); undefined when off. */
  readonly trace?: Context | undefined;
}

/** What a failed request's log row can still say about it. */
export interface FailureInfo {
  readonly model?: string | undefined;
  readonly unnormKey?: string | undefined;
  readonly instruction?: string | undefined;
  readonly robotId?: string | undefined;
  /** The split experiment that chose the model (failures inside the runner). */
  readonly experiment?: ExperimentTag | undefined;
}

export interface RunOutput {
  readonly id: string;
  /** The engine's result; `result.action` is the model's (raw) action. */
  readonly result: InferenceResult;
  /** The safe action to send (what safety let through, possibly clamped or zeroed). */
  readonly action: readonly number[];
  readonly actionChunk?: readonly (readonly number[])[] | undefined;
  readonly safety: SafetyResult;
  readonly totalMs: number;
  /** Set when a split experiment chose the model. */
  readonly experiment?: ExperimentTag | undefined;
}

/** The gate used when none is configured (tests of the engine alone): says so in every answer. */
export const NO_SAFETY_GATE: SafetyGate = {
  async admit() {
    return undefined;
  },
  async check(input) {
    return {
      action: input.decoded.action,
      actionChunk: input.decoded.actionChunk,
      safety: {
        status: "not_evaluated",
        violations: [],
        action_taken: "none",
        raw_action: input.decoded.actionChunk ?? input.decoded.action,
        action: input.decoded.actionChunk ?? input.decoded.action,
        skipped: [{ check: "all", reason: "no safety gate configured" }],
        reason: "no safety gate configured",
      },
    };
  },
};

/**
 * The model name the safety gate judges an answer under: a customer's own model (docs/models.md,
 * "Bring your own endpoint") is judged by the rules, profiles and stops, under a name no registry
 * statistics answer to (ids have no colon). Served and shadow candidates alike.
 */
export function safetyModelId(result: Pick<InferenceResult, "model" | "owner">): string {
  return result.owner === "customer" ? `customer:${result.model}` : result.model;
}

const sha256 = (s: string) => hash("sha256", s, "hex");

/**
 * A copy of a uint8 HxWx3 array's pixels for the upload queue: a worker backend may take the
 * array's buffer once the model runs. Undefined for encoded images (kept by reference; the
 * decoder copies what it hands to threads) and for arrays the engine will refuse anyway.
 */
function pixelsOf(image: RunInput["image"]): UploadBody | undefined {
  const a = image.imageArray;
  if (a === undefined || a.dtype !== "|u1" || a.shape.length !== 3 || a.shape[2] !== 3) return undefined;
  const d = a.data as Uint8Array;
  const data = new Uint8Array(d.byteLength);
  data.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  return { kind: "pixels", data, width: a.shape[1] as number, height: a.shape[0] as number };
}
const round = (v: number) => Math.round(v * 1000) / 1000;

/** API-level counter: per entry point, including requests that fail before reaching a model. */
export function createInferenceApiMetrics(registry: Registry): Counter<"source" | "model" | "outcome"> {
  return new Counter({
    name: "vla_inference_api_requests_total",
    help: "Inference requests by entry point (rest, act, stream, openpi), model and outcome (ok or an error code); 401/403/429 rejections excluded.",
    labelNames: ["source", "model", "outcome"],
    registers: [registry],
  });
}

/** What one inference's log row may keep (docs/privacy.md, "Anonymization"). */
export interface RecordingPolicy {
  /** The instruction text (the hash is kept unless anonymization is `full`). */
  readonly storeInstructions: boolean;
  /** The camera image, in the object store (consent `store_images`; never under `full`). */
  readonly storeImages: boolean;
  /** The image's thumbnail embedding in context_metadata (consent `store_embeddings`; never under `full`). */
  readonly storeEmbeddings: boolean;
  /**
   * `none` and `partial`: the row keeps its ids (`partial` is pseudonymized by the analytics
   * job); `full`: the row keeps no identifier or content, only pseudonyms and counters.
   */
  readonly anonymization: "none" | "partial" | "full";
}

/** A copy of an array image for the shadow queue (the served model's backend may take the original's buffer). */
function copyImage(image: RunInput["image"]): RunInput["image"] {
  const a = image.imageArray;
  if (a === undefined) return image;
  const d = a.data;
  const copy = new (d.constructor as new (n: number) => typeof d)(d.length);
  (copy as Uint8Array).set(d as Uint8Array);
  return { imageBytes: image.imageBytes, imageArray: { ...a, data: copy } };
}

/** The customer's data consent, as the runner asks it (src/modules/consent). */
export interface ConsentGate {
  /** What this customer's log rows may keep now. Synchronous when cached. */
  recording(customerId: string): RecordingPolicy | Promise<RecordingPolicy>;
}

/** When the consent lookup fails: keep the least (no text, no identifiers). */
const FAIL_CLOSED: RecordingPolicy = {
  storeInstructions: false,
  storeImages: false,
  storeEmbeddings: false,
  anonymization: "full",
};

/**
 * Runs one inference through the engine and records it: a log row for the batch writer (off
 * the request path) and the per-source counter. Framework-free; routes and stream handlers
 * call it after parsing their own wire format.
 */
export class InferenceRunner {
  private readonly engine: InferenceEngine;
  private readonly sink: { push(row: InferenceLogEntry, trace?: SpanContext): void };
  private readonly logInstructions: boolean;
  private readonly counter: Counter<"source" | "model" | "outcome"> | undefined;
  private readonly now: () => number;
  private readonly safety: SafetyGate;
  private readonly consent: ConsentGate | undefined;
  private readonly pseudonyms: Pseudonymizer | undefined;
  private readonly unconsented: RecordingPolicy;
  private readonly pendingRows = new Set<Promise<void>>();
  private readonly context: ContextRecorder | undefined;
  private readonly experiments: ExperimentGate | undefined;

  constructor(options: {
    engine: InferenceEngine;
    sink: { push(row: InferenceLogEntry, trace?: SpanContext): void };
    logInstructions: boolean;
    counter?: Counter<"source" | "model" | "outcome">;
    now?: () => number;
    safety?: SafetyGate;
    /** Without one, LOG_INSTRUCTIONS alone decides (engine-only tests). */
    consent?: ConsentGate;
    /** Pseudonyms of rows under anonymization `full`; without one those rows keep no robot or key id. */
    pseudonyms?: Pseudonymizer;
    /** context_metadata rows and stored images (src/modules/context); without one, none are kept. */
    context?: ContextRecorder;
    /** Split and shadow experiments (src/modules/experiments); without one, requests are routed as named. */
    experiments?: ExperimentGate;
  }) {
    this.context = options.context;
    this.experiments = options.experiments;
    this.consent = options.consent;
    this.pseudonyms = options.pseudonyms;
    this.unconsented = {
      storeInstructions: options.logInstructions,
      storeImages: false,
      storeEmbeddings: false,
      anonymization: "none",
    };
    this.safety = options.safety ?? NO_SAFETY_GATE;
    this.engine = options.engine;
    this.sink = options.sink;
    this.logInstructions = options.logInstructions;
    this.counter = options.counter;
    this.now = options.now ?? Date.now;
  }

  async run(ctx: CallContext, raw: RunInput): Promise<RunOutput> {
    const customerId = ctx.principal.customerId;
    // Every entry point passes here: an API key's robot binds whatever the caller resolved
    // before (403 robot_mismatch, not logged: a rejection), and its defaults fill the gaps.
    let input: RunInput = { ...raw, ...withKeyDefaults(ctx.principal, raw, this.engine.defaultModel) };
    // A running split experiment picks the model when neither the request nor its key named one;
    // the key's unnorm_key then applies only if the variant's model is the key's (key-defaults.ts).
    const fixed = raw.experiment;
    const planned = this.experiments?.plan(
      ctx.principal,
      input.robotId,
      fixed === undefined && input.model === undefined,
    );
    const plan = planned instanceof Promise ? await planned : planned;
    const assigned = fixed ?? plan?.assignment;
    if (fixed === undefined && assigned !== undefined) {
      input = {
        ...raw,
        ...withKeyDefaults(ctx.principal, { ...raw, model: assigned.model }, this.engine.defaultModel),
      };
    }
    const experiment: ExperimentTag | undefined =
      assigned === undefined ? undefined : { id: assigned.id, variant: assigned.variant };
    // Copied before the served model runs: a worker backend may take an array's buffer.
    const shadowImage = plan?.shadow === undefined ? undefined : copyImage(input.image);
    let result: InferenceResult;
    let outcome: SafetyOutcome;
    let admission: unknown;
    const id = randomUUID();
    const admitting = this.safety.admit(customerId, input.robotId, input.previousAction === undefined);
    // Looked up while the model runs; from the in-process cache after the customer's first request.
    const policing = this.policy(customerId);
    admitting.catch(() => {}); // awaited below; this only keeps an early rejection from being "unhandled"
    // Known now when cached (the usual case); on a customer's first request both are prepared and
    // the policy decides below whether they are kept.
    const known = policing instanceof Promise ? undefined : policing;
    const keepsContent = this.context !== undefined && known?.anonymization !== "full";
    const wantThumbnail = keepsContent && (known === undefined || known.storeEmbeddings);
    const pixels = keepsContent && (known === undefined || known.storeImages) ? pixelsOf(input.image) : undefined;
    try {
      try {
        result = await this.engine.infer({
          model: input.model,
          instruction: input.instruction,
          unnormKey: input.unnormKey,
          customerId: ctx.principal.customerId,
          viewer: ctx.principal, // a model restricted to other customers: 404 unknown_model
          thumbnail: wantThumbnail,
          ...input.image,
          ...(ctx.trace === undefined ? {} : { trace: ctx.trace }),
        });
      } catch (e) {
        await admitting; // a stopped robot's 409 wins over the model's error
        throw e;
      }
      admission = await admitting;
      const decoded: DecodedAction = { action: result.action, actionChunk: result.actionChunk };
      const safetySpan = startChild(ctx.trace, "safety.check", { "vla.model": result.model });
      const checking = this.safety.check({
        customerId,
        robotId: input.robotId,
        inferenceId: id,
        modelId: safetyModelId(result),
        unnormKey: result.unnormKey,
        decoded: input.postprocess === undefined ? decoded : input.postprocess(decoded),
        robotState: input.robotState,
        previousAction: input.previousAction,
        admission,
      });
      if (safetySpan === undefined) outcome = await checking;
      else {
        try {
          outcome = await checking;
        } catch (e) {
          endSpan(safetySpan, e);
          throw e;
        }
        endSpan(safetySpan, undefined, {
          "vla.safety.status": outcome.safety.status,
          "vla.safety.violations": outcome.safety.violations.length,
        });
      }
    } catch (e) {
      const code = (e as Partial<AppError>).code ?? "internal_error";
      this.recordFailure(ctx, { ...input, experiment }, code);
      throw e;
    }
    const totalMs = round(ctx.elapsedMs());
    const policy = policing instanceof Promise ? await policing : policing;
    const createdAt = this.now();
    if (this.context !== undefined && policy.anonymization !== "full") {
      const bytes = input.image.imageBytes;
      const format = result.image.format;
      this.context.record({
        inferenceId: id,
        customerId,
        createdAt: new Date(createdAt).toISOString(),
        imageSha256: result.imageSha256,
        image: result.image,
        embedding: policy.storeEmbeddings ? result.thumbnail : undefined,
        upload: !policy.storeImages
          ? undefined
          : bytes !== undefined && format !== "array"
            ? { kind: "encoded", bytes, format }
            : pixels,
      });
    }
    this.record(
      policy,
      {
        ...this.base(ctx, input, id, policy.storeInstructions, createdAt),
        model: result.model,
        backend: result.backend,
        imageSha256: result.imageSha256,
        action: [...outcome.action],
        actionChunk: outcome.actionChunk?.map((step) => [...step]) ?? null,
        unnormKey: result.unnormKey,
        status: "ok",
        errorCode: null,
        safetyStatus: outcome.safety.status,
        preprocessMs: result.timing.preprocess_ms,
        queueMs: result.timing.queue_ms,
        modelMs: result.timing.model_ms,
        totalMs,
        experimentId: experiment?.id ?? null,
        variant: experiment?.variant ?? null,
      },
      ctx.trace,
    );
    this.counter?.inc({
      source: ctx.source,
      model: result.owner === "customer" ? "customer" : result.model,
      outcome: "ok",
    });
    // Anonymization `full` keeps no actions, and a shadow record is actions: such customers are not shadowed.
    if (plan?.shadow !== undefined && shadowImage !== undefined && policy.anonymization !== "full") {
      this.experiments?.shadow({
        experimentId: plan.shadow.experimentId,
        candidateModel: plan.shadow.model,
        inferenceId: id,
        principal: ctx.principal,
        robotId: input.robotId,
        instruction: input.instruction,
        instructionKey: instructionKey(input.instruction),
        unnormKey: input.unnormKey,
        image: shadowImage,
        robotState: input.robotState,
        previousAction: input.previousAction,
        admission,
        servedModel: result.model,
        servedUnnormKey: result.unnormKey,
        servedAction: outcome.action,
        servedSafetyStatus: outcome.safety.status,
      });
    }
    return {
      id,
      result,
      action: outcome.action,
      actionChunk: outcome.actionChunk,
      safety: outcome.safety,
      totalMs,
      ...(experiment === undefined ? {} : { experiment }),
    };
  }

  /** Logs a request that failed before or inside the engine (never 401/403/429: callers skip those). */
  recordFailure(ctx: CallContext, asked: FailureInfo, code: string): void {
    const info = this.withDefaults(ctx, asked);
    const model = typeof info.model === "string" ? info.model.slice(0, 128) : this.engine.defaultModel;
    const id = randomUUID();
    const createdAt = this.now();
    const push = (policy: RecordingPolicy) =>
      this.record(
        policy,
        {
          ...this.base(ctx, info, id, policy.storeInstructions, createdAt),
          model,
          backend: null,
          imageSha256: null,
          action: null,
          actionChunk: null,
          unnormKey: typeof info.unnormKey === "string" ? info.unnormKey.slice(0, 128) : null,
          status: "error",
          errorCode: code,
          safetyStatus: null,
          preprocessMs: null,
          queueMs: null,
          modelMs: null,
          totalMs: round(ctx.elapsedMs()),
          experimentId: info.experiment?.id ?? null,
          variant: info.experiment?.variant ?? null,
        },
        ctx.trace,
      );
    const policy = this.policy(ctx.principal.customerId);
    if (policy instanceof Promise) {
      // The customer's first request on this instance: the row waits for its consent (one load).
      const pending = policy.then(push);
      this.pendingRows.add(pending);
      void pending.finally(() => this.pendingRows.delete(pending));
    } else push(policy);
    // Unknown model names are caller input: keep the label set bounded.
    const label = this.engine.modelIds().includes(model) ? model : "unknown";
    this.counter?.inc({ source: ctx.source, model: label, outcome: code });
  }

  /** Resolves when every failure row waiting for its customer's consent has reached the sink. */
  async drain(): Promise<void> {
    await Promise.all([...this.pendingRows]);
  }

  /** What the failed request named, completed by its key's defaults (a mismatch keeps what it named). */
  private withDefaults(ctx: CallContext, info: FailureInfo): FailureInfo {
    const str = (v: unknown) => (typeof v === "string" ? v : undefined);
    try {
      const t = withKeyDefaults(
        ctx.principal,
        { robotId: str(info.robotId), model: str(info.model), unnormKey: str(info.unnormKey) },
        this.engine.defaultModel,
      );
      return { ...info, robotId: t.robotId, model: t.model, unnormKey: t.unnormKey };
    } catch {
      return info;
    }
  }

  /**
   * Instruction text is stored only when the operator allows it (LOG_INSTRUCTIONS, the ceiling)
   * and the customer's consent does (store_instructions). A failed consent lookup keeps the least:
   * no text and anonymization `full`.
   */
  private policy(customerId: string): RecordingPolicy | Promise<RecordingPolicy> {
    if (this.consent === undefined) return this.unconsented;
    const ceiling = (p: RecordingPolicy): RecordingPolicy =>
      this.logInstructions || !p.storeInstructions ? p : { ...p, storeInstructions: false };
    try {
      const v = this.consent.recording(customerId);
      return v instanceof Promise ? v.then(ceiling, () => FAIL_CLOSED) : ceiling(v);
    } catch {
      return FAIL_CLOSED;
    }
  }

  /**
   * Anonymization `full`: the row is built without any identifier or content, so none reaches the
   * database: robot and API key ids become keyed pseudonyms, the user id, instruction (text and
   * hashes), image hash and actions are dropped. What stays is what the aggregate counters need.
   */
  private record(policy: RecordingPolicy, row: InferenceLogEntry, trace?: Context): void {
    // Tracing on: the batch_write span that stores the row links to this request's span.
    const link = trace === undefined ? undefined : spanContextOf(trace);
    if (policy.anonymization !== "full") {
      this.sink.push(row, link);
      return;
    }
    const p = this.pseudonyms;
    this.sink.push(
      {
        ...row,
        apiKeyId: p === undefined ? null : p.apiKey(row.customerId, row.apiKeyId),
        robotId: p === undefined ? null : p.robot(row.customerId, row.robotId),
        userId: null,
        instruction: null,
        instructionSha256: null,
        instructionKey: null,
        imageSha256: null,
        action: null,
        actionChunk: null,
      },
      link,
    );
  }

  private base(ctx: CallContext, info: FailureInfo, id: string, keepText: boolean, at = this.now()) {
    const instruction = typeof info.instruction === "string" ? info.instruction : null;
    const robotId = typeof info.robotId === "string" ? info.robotId.slice(0, 128) : null;
    return {
      id,
      createdAt: new Date(at).toISOString(),
      customerId: ctx.principal.customerId,
      apiKeyId: ctx.principal.apiKeyId,
      userId: ctx.principal.userId,
      robotId,
      instruction: keepText && instruction !== null ? instruction.slice(0, 1000) : null,
      instructionSha256: instruction === null ? null : sha256(instruction),
      instructionKey: instruction === null ? null : instructionKey(instruction),
      source: ctx.source,
    };
  }
}
