import { createHash } from "node:crypto";
import type { FeedbackRow, NewFeedbackRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import type { FeedbackCursor, FeedbackFilter, FeedbackRepo, InferenceRef, StatsRow } from "./feedback.repo.ts";
import {
  ACTION_DIM,
  FAILURE_SEVERITIES,
  FAILURE_TYPES,
  type FeedbackType,
  type FeedbackView,
  OBSERVED_ISSUES,
  type StatsGroup,
} from "./feedback.schemas.ts";

/** Who sends feedback. */
export interface FeedbackCaller {
  readonly customerId: string;
  readonly apiKeyId: string | null;
  readonly userId: string | null;
  /** A robot-bound API key's robot: such a key reports only on its robot's inferences. */
  readonly robotId: string | null;
}

/** The validated request bodies, as the wire schemas define them. */
export interface FeedbackBody {
  readonly inference_id: string;
  readonly rating?: number;
  readonly comment?: string;
  readonly observed_issue?: string;
  readonly corrected_action?: readonly number[];
  readonly corrected_chunk?: readonly (readonly number[])[];
  readonly failure_type?: string;
  readonly description?: string;
  readonly severity?: string;
}

export type LookupResult = "found" | "found_after_flush" | "found_after_wait" | "not_found";

export interface FeedbackServiceDeps {
  readonly repo: FeedbackRepo;
  /** Writes the inference logs this instance still buffers (the row may be among them). */
  readonly flushInferenceLogs: () => Promise<void>;
  /** After a flush missed: wait this long once and look again (rows buffered by other instances); 0: never. */
  readonly lookupWaitMs: number;
  readonly maxAgeDays: number;
  readonly now: () => number;
  readonly events?: {
    readonly submitted?: (type: FeedbackType, replayed: boolean) => void;
    readonly lookup?: (result: LookupResult) => void;
  };
}

export interface CorrectionError {
  readonly translation: number;
  readonly rotation: number;
  readonly gripper: number;
}

const DAY_MS = 86_400_000;

/**
 * The L2 distance between a corrected and a model 7-DoF action per part: translation (dims 0-2),
 * rotation (3-5), gripper (6).
 */
export function actionError(corrected: readonly number[], model: readonly number[]): CorrectionError {
  const l2 = (from: number, to: number) => {
    let s = 0;
    for (let i = from; i < to; i++) {
      const d = (corrected[i] ?? 0) - (model[i] ?? 0);
      s += d * d;
    }
    return Math.sqrt(s);
  };
  return { translation: l2(0, 3), rotation: l2(3, 6), gripper: l2(6, 7) };
}

/** Per part, the mean over steps of each step's `actionError`. */
export function chunkError(
  corrected: readonly (readonly number[])[],
  model: readonly (readonly number[])[],
): CorrectionError {
  let t = 0;
  let r = 0;
  let g = 0;
  for (let i = 0; i < corrected.length; i++) {
    const e = actionError(corrected[i] ?? [], model[i] ?? []);
    t += e.translation;
    r += e.rotation;
    g += e.gripper;
  }
  const n = corrected.length;
  return { translation: t / n, rotation: r / n, gripper: g / n };
}

/** JSON with object keys sorted at every depth: the same body always hashes the same. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export function requestHash(type: FeedbackType, body: FeedbackBody): string {
  return createHash("sha256")
    .update(`${type}\n${canonicalJson(body)}`)
    .digest("hex");
}

const isChunk = (v: unknown): v is number[][] => Array.isArray(v) && v.length > 0 && Array.isArray(v[0]);

export function toView(r: FeedbackRow): FeedbackView {
  const chunk = isChunk(r.correctedAction);
  const error =
    r.errorTranslation === null || r.errorRotation === null || r.errorGripper === null
      ? null
      : { translation: r.errorTranslation, rotation: r.errorRotation, gripper: r.errorGripper };
  return {
    id: r.id,
    type: r.type as FeedbackType,
    inference_id: r.inferenceId,
    inference_created_at: r.inferenceCreatedAt.toISOString(),
    robot_id: r.robotId,
    model: r.model,
    source: r.source,
    api_key_id: r.apiKeyId,
    user_id: r.userId,
    rating: r.rating,
    observed_issue: r.observedIssue,
    failure_type: r.failureType,
    severity: r.severity,
    comment: r.comment,
    description: r.description,
    corrected_action: r.correctedAction !== null && !chunk ? (r.correctedAction as number[]) : null,
    corrected_chunk: chunk ? (r.correctedAction as number[][]) : null,
    model_action: r.modelAction !== null && !isChunk(r.modelAction) ? (r.modelAction as number[]) : null,
    model_chunk: isChunk(r.modelAction) ? r.modelAction : null,
    error,
    created_at: r.createdAt.toISOString(),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Feedback: validation against the inference, correction arithmetic, idempotency, list and stats. */
export class FeedbackService {
  private readonly deps: FeedbackServiceDeps;

  constructor(deps: FeedbackServiceDeps) {
    this.deps = deps;
  }

  /**
   * Stores one feedback record; `replayed` when the idempotency key was already used for the
   * same request (the first record is returned, nothing is stored).
   */
  async submit(
    caller: FeedbackCaller,
    type: FeedbackType,
    body: FeedbackBody,
    idempotencyKey: string | undefined,
  ): Promise<{ view: FeedbackView; replayed: boolean }> {
    const hash = requestHash(type, body);
    if (idempotencyKey !== undefined) {
      const first = await this.deps.repo.byIdempotencyKey(caller.customerId, idempotencyKey);
      if (first !== undefined) return this.replay(first, hash, type);
    }
    const inference = await this.findInference(caller.customerId, body.inference_id);
    if (caller.robotId !== null && inference.robotId !== caller.robotId) {
      throw errors.robotMismatch(inference.robotId ?? "(none)", caller.robotId);
    }
    const row: NewFeedbackRow = {
      customerId: caller.customerId,
      inferenceId: inference.id,
      inferenceCreatedAt: inference.createdAt,
      robotId: inference.robotId,
      model: inference.model,
      source: inference.source,
      apiKeyId: caller.apiKeyId,
      userId: caller.userId,
      type,
      idempotencyKey: idempotencyKey ?? null,
      requestHash: hash,
      // Millisecond precision, as cursors carry it (a microsecond now() would skip rows at a page edge).
      createdAt: new Date(this.deps.now()),
      ...this.typeColumns(type, body, inference),
    };
    const stored = await this.deps.repo.insert(row);
    if (stored === undefined) {
      // A concurrent request with the same key won the insert.
      const first =
        idempotencyKey === undefined
          ? undefined
          : await this.deps.repo.byIdempotencyKey(caller.customerId, idempotencyKey);
      if (first === undefined) throw errors.internal(new Error("feedback insert conflicted without a stored row"));
      return this.replay(first, hash, type);
    }
    this.deps.events?.submitted?.(type, false);
    return { view: toView(stored), replayed: false };
  }

  private replay(first: FeedbackRow, hash: string, type: FeedbackType): { view: FeedbackView; replayed: boolean } {
    if (first.requestHash !== hash) throw errors.idempotencyKeyReused();
    this.deps.events?.submitted?.(type, true);
    return { view: toView(first), replayed: true };
  }

  private typeColumns(type: FeedbackType, body: FeedbackBody, inference: InferenceRef): Partial<NewFeedbackRow> {
    switch (type) {
      case "success":
        return { rating: body.rating ?? null, comment: body.comment ?? null };
      case "safety":
        return {
          rating: body.rating ?? null,
          observedIssue: body.observed_issue ?? null,
          comment: body.comment ?? null,
        };
      case "failure":
        return {
          failureType: body.failure_type ?? null,
          description: body.description ?? null,
          severity: body.severity ?? null,
        };
      case "correction":
        return { comment: body.comment ?? null, ...this.correction(body, inference) };
    }
  }

  private correction(body: FeedbackBody, inference: InferenceRef): Partial<NewFeedbackRow> {
    const one = body.corrected_action;
    const chunk = body.corrected_chunk;
    if ((one === undefined) === (chunk === undefined)) {
      throw errors.validation([
        { in: "body", path: "", message: "must have exactly one of corrected_action and corrected_chunk" },
      ]);
    }
    if (inference.status !== "ok") {
      throw errors.inferenceWithoutAction(
        inference.id,
        "This inference failed and returned no action; there is nothing to correct.",
      );
    }
    if (inference.action === null) {
      // Anonymization `full` (docs/privacy.md): the log row keeps no action, and a correction would store one.
      throw errors.inferenceWithoutAction(
        inference.id,
        "No action is kept for this inference (the customer's consent has anonymization full); there is nothing to compare a correction with.",
      );
    }
    const dimProblem = (path: string, dim: number) =>
      errors.validation([
        {
          in: "body",
          path,
          message: `the inference's action has ${dim} dimensions; corrections compare ${ACTION_DIM}-DoF actions`,
        },
      ]);
    if (one !== undefined) {
      const model = inference.action;
      if (model.length !== ACTION_DIM) throw dimProblem("/corrected_action", model.length);
      const e = actionError(one, model);
      return {
        correctedAction: [...one],
        modelAction: model,
        errorTranslation: e.translation,
        errorRotation: e.rotation,
        errorGripper: e.gripper,
      };
    }
    const steps = chunk as readonly (readonly number[])[];
    const model = inference.actionChunk;
    if (model === null) {
      throw errors.validation([
        {
          in: "body",
          path: "/corrected_chunk",
          message: "this inference returned a single action, not a chunk; send corrected_action",
        },
      ]);
    }
    if (steps.length !== model.length) {
      throw errors.validation([
        {
          in: "body",
          path: "/corrected_chunk",
          message: `must have ${model.length} steps, as the inference's chunk`,
        },
      ]);
    }
    const badStep = model.find((s) => s.length !== ACTION_DIM);
    if (badStep !== undefined) throw dimProblem("/corrected_chunk", badStep.length);
    const e = chunkError(steps, model);
    return {
      correctedAction: steps.map((s) => [...s]),
      modelAction: model,
      errorTranslation: e.translation,
      errorRotation: e.rotation,
      errorGripper: e.gripper,
    };
  }

  /**
   * The caller's inference, not older than the feedback age limit. Inference logs are written by
   * a batch writer off the request path, so feedback sent right after an inference may find no
   * row yet: this instance's writer is flushed and the row looked up again; with several
   * instances (the row may sit in another's buffer) it waits once more.
   */
  async findInference(customerId: string, id: string): Promise<InferenceRef> {
    const since = new Date(this.deps.now() - this.deps.maxAgeDays * DAY_MS);
    const look = () => this.deps.repo.findInference(customerId, id, since);
    const report = (result: LookupResult, row: InferenceRef | undefined) => {
      this.deps.events?.lookup?.(result);
      return row;
    };
    let row = await look();
    if (row !== undefined) return report("found", row) as InferenceRef;
    await this.deps.flushInferenceLogs();
    row = await look();
    if (row !== undefined) return report("found_after_flush", row) as InferenceRef;
    if (this.deps.lookupWaitMs > 0) {
      await sleep(this.deps.lookupWaitMs);
      row = await look();
      if (row !== undefined) return report("found_after_wait", row) as InferenceRef;
    }
    report("not_found", undefined);
    throw errors.notFound(
      `Inference (unknown, another customer's, or older than the ${this.deps.maxAgeDays}-day feedback window)`,
    );
  }

  async list(customerId: string, filter: FeedbackFilter, cursor: FeedbackCursor | undefined, limit: number) {
    const rows = await this.deps.repo.list(customerId, filter, cursor, limit);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      data: page.map(toView),
      next: rows.length > limit && last !== undefined ? { createdAt: last.createdAt.toISOString(), id: last.id } : null,
    };
  }

  async stats(
    customerId: string,
    filter: FeedbackFilter,
    maxGroups: number,
  ): Promise<{
    overall: StatsGroup;
    byModel: (StatsGroup & { model: string })[];
    byRobot: (StatsGroup & { robot_id: string | null })[];
    truncated: boolean;
  }> {
    const rows = await this.deps.repo.stats(customerId, filter);
    const all = rows.find((r) => r.dim === "all");
    const largest = <T extends { count: number }>(xs: T[]) => xs.sort((a, b) => b.count - a.count);
    const byModel = largest(
      rows.filter((r) => r.dim === "model").map((r) => ({ model: String(r.key), ...statsGroup(r) })),
    );
    const byRobot = largest(rows.filter((r) => r.dim === "robot").map((r) => ({ robot_id: r.key, ...statsGroup(r) })));
    return {
      overall: all === undefined ? statsGroup(undefined) : statsGroup(all),
      byModel: byModel.slice(0, maxGroups),
      byRobot: byRobot.slice(0, maxGroups),
      truncated: byModel.length > maxGroups || byRobot.length > maxGroups,
    };
  }
}

/** One grouping set's aggregate row as the API shows it; undefined (no rows at all) is all zeros. */
export function statsGroup(r: StatsRow | undefined): StatsGroup {
  const num = (k: string): number | null => {
    const v = r?.[k];
    return v === undefined || v === null ? null : Number(v);
  };
  const int = (k: string): number => num(k) ?? 0;
  const counts = (prefix: string, values: readonly string[]) => {
    const out: Record<string, number> = {};
    for (const v of values) if (int(`${prefix}_${v}`) > 0) out[v] = int(`${prefix}_${v}`);
    return out;
  };
  const rating = (type: string) => {
    const distribution = { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 };
    let count = 0;
    for (const v of [1, 2, 3, 4, 5] as const) {
      distribution[v] = int(`r_${type}_${v}`);
      count += distribution[v];
    }
    return { count, mean: count === 0 ? null : num(`mean_${type}`), distribution };
  };
  const part = (p: string) => ({
    mean: num(`e_${p}_mean`),
    p50: num(`e_${p}_p50`),
    p95: num(`e_${p}_p95`),
    max: num(`e_${p}_max`),
  });
  return {
    count: int("n"),
    by_type: {
      success: int("t_success"),
      safety: int("t_safety"),
      correction: int("t_correction"),
      failure: int("t_failure"),
    },
    success_rating: rating("success"),
    safety_rating: rating("safety"),
    observed_issues: counts("oi", OBSERVED_ISSUES),
    correction_error: {
      count: int("e_count"),
      translation: part("translation"),
      rotation: part("rotation"),
      gripper: part("gripper"),
    },
    failure_types: counts("ft", FAILURE_TYPES),
    failure_severities: counts("sev", FAILURE_SEVERITIES),
  };
}
