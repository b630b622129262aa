import { randomUUID } from "node:crypto";
import type { Principal } from "../../platform/auth.ts";
import type { ExperimentRow, ExperimentVariant, ShadowResultRow } from "../../platform/db/schema/index.ts";
import { AppError, errors, type FieldError } from "../../platform/errors.ts";
import type { InvalidationBus } from "../../platform/invalidation.ts";
import { SwrCache } from "../../platform/swr-cache.ts";
import type { InferenceEngine } from "../inference/inference.service.ts";
import {
  type ExperimentAssignment,
  type ExperimentGate,
  type ExperimentPlan,
  type SafetyGate,
  type ShadowJob,
  safetyModelId,
} from "../inference/inference-runner.ts";
import { instructionKey } from "../inference/instruction-key.ts";
import { assign } from "./assignment.ts";
import type {
  ExperimentsRepo,
  LogWindow,
  PageCursor,
  ShadowEntry,
  ShadowFilter,
  VariantFeedbackRow,
  VariantOutcomeRow,
  VariantRequestRow,
  VariantUnitRow,
} from "./experiments.repo.ts";
import { actionDistances, type ShadowQueue } from "./shadow-queue.ts";
import { type ClusteredSample, clusterRobustTTest, type TestResult, twoProportionZTest, welchTTest } from "./stats.ts";

export const EXPERIMENTS_TOPIC = "experiments";

/** The create body as the schema let it through (docs/experiments.md). */
export interface CreateExperimentBody {
  readonly name: string;
  readonly mode?: "split" | "shadow" | undefined;
  readonly assignment?: "robot_id" | "request" | undefined;
  readonly variants?: readonly { name?: string | undefined; model: string; weight: number }[] | undefined;
  readonly candidate_model?: string | undefined;
  readonly sample_rate?: number | undefined;
  readonly starts_at?: string | undefined;
  readonly ends_at?: string | undefined;
}

/** What the request path needs of a customer's experiments, precomputed when loaded. */
interface ActiveSplit {
  readonly id: string;
  readonly assignment: "robot_id" | "request";
  readonly variants: readonly ExperimentVariant[];
  readonly from: number;
  readonly until: number;
}
interface ActiveShadow {
  readonly id: string;
  readonly model: string;
  readonly rate: number;
  readonly from: number;
  readonly until: number;
}
interface Active {
  readonly split: ActiveSplit | undefined;
  readonly shadow: ActiveShadow | undefined;
}
const NONE: Active = { split: undefined, shadow: undefined };

export type ExperimentStatus = "scheduled" | "running" | "stopped" | "ended";

/**
 * A stop at or after `ends_at` (the repo closes an ended experiment that way before creating the
 * next; POST .../stop of an ended one) is no stop: it ran to its end.
 */
function stoppedEarly(row: ExperimentRow): boolean {
  return row.stoppedAt !== null && (row.endsAt === null || row.stoppedAt.getTime() < row.endsAt.getTime());
}

export function statusOf(row: ExperimentRow, now: number): ExperimentStatus {
  if (stoppedEarly(row)) return "stopped";
  if (row.stoppedAt !== null || (row.endsAt !== null && row.endsAt.getTime() <= now)) return "ended";
  if (row.startsAt !== null && row.startsAt.getTime() > now) return "scheduled";
  return "running";
}

export interface ShadowSink {
  push(row: ShadowEntry): void;
}

export interface ExperimentsServiceOptions {
  readonly repo: ExperimentsRepo;
  readonly engine: InferenceEngine;
  readonly safety: SafetyGate | undefined;
  readonly invalidation: InvalidationBus;
  readonly cacheMs: number;
  readonly now: () => number;
  /** Shadow rows: the batch writer "shadow-results". */
  readonly sink: ShadowSink;
  readonly queue: (run: (job: ShadowJob) => Promise<void>) => ShadowQueue<ShadowJob>;
  readonly random?: () => number;
  readonly onLoadError?: (error: unknown) => void;
}

const round3 = (v: number | null) => (v === null ? null : Math.round(v * 1000) / 1000);

/**
 * Experiments of a customer: CRUD, the request-path routing (`plan`, the runner's ExperimentGate),
 * the shadow queue's worker and the results. Framework-free.
 */
export class ExperimentsService implements ExperimentGate {
  private readonly o: ExperimentsServiceOptions;
  private readonly cache: SwrCache<Active>;
  private readonly random: () => number;
  readonly queue: ShadowQueue<ShadowJob>;

  constructor(options: ExperimentsServiceOptions) {
    this.o = options;
    this.random = options.random ?? Math.random;
    this.cache = new SwrCache<Active>({
      freshMs: options.cacheMs,
      // Past freshMs the entry is still served while one background load refreshes it.
      staleMs: options.cacheMs * 10,
      maxEntries: 100_000,
      now: options.now,
      load: (customerId) => this.load(customerId),
      onRefreshError: options.onLoadError,
    });
    options.invalidation.on(EXPERIMENTS_TOPIC, (customerId) => this.cache.delete(customerId));
    options.invalidation.onReset(() => this.cache.clear());
    this.queue = options.queue((job) => this.runShadow(job));
  }

  // ---- request path -------------------------------------------------------------------------

  plan(
    viewer: Principal,
    robotId: string | undefined,
    routable: boolean,
  ): ExperimentPlan | undefined | Promise<ExperimentPlan | undefined> {
    const active = this.cache.get(viewer.customerId);
    if (active instanceof Promise) {
      return active.then(
        (a) => this.decide(a, viewer, robotId, routable),
        (e: unknown) => {
          // No experiment rather than a failed inference: the request is served as named.
          this.o.onLoadError?.(e);
          return undefined;
        },
      );
    }
    return this.decide(active, viewer, robotId, routable);
  }

  private decide(
    active: Active,
    viewer: Principal,
    robotId: string | undefined,
    routable: boolean,
  ): ExperimentPlan | undefined {
    if (active === NONE) return undefined;
    const now = this.o.now();
    const h = active.shadow;
    const assignment = routable ? this.variantFor(active, viewer, robotId, now) : undefined;
    const shadow =
      h !== undefined && now >= h.from && now < h.until && this.random() < h.rate
        ? { experimentId: h.id, model: h.model }
        : undefined;
    return assignment === undefined && shadow === undefined ? undefined : { assignment, shadow };
  }

  /**
   * The split experiment's variant for a session that names no model (streams, openpi); undefined
   * when none runs, or when the variant's model is gone (a registry reload removed it, the
   * customer's endpoint was deleted): the session gets the default model, as REST requests do.
   */
  async assignment(principal: Principal, robotId: string | undefined): Promise<ExperimentAssignment | undefined> {
    let active: Active;
    try {
      active = await this.cache.get(principal.customerId);
    } catch (e) {
      this.o.onLoadError?.(e);
      return undefined;
    }
    return this.variantFor(active, principal, robotId, this.o.now());
  }

  /**
   * The running split experiment's variant for this robot (or draw), the one rule for requests and
   * sessions. A variant whose model is gone (a registry reload removed it, the customer's endpoint
   * was deleted, its access changed) gives undefined: the caller is served as if no experiment ran,
   * untagged, never a 404 for a request that named no model (docs/experiments.md).
   */
  private variantFor(
    active: Active,
    viewer: Principal,
    robotId: string | undefined,
    now: number,
  ): ExperimentAssignment | undefined {
    const s = active.split;
    if (s === undefined || now < s.from || now >= s.until) return undefined;
    const v = assign(s.id, s.assignment, s.variants, robotId, this.random);
    return this.o.engine.serves(v.model, viewer) ? { id: s.id, variant: v.name, model: v.model } : undefined;
  }

  shadow(job: ShadowJob): void {
    this.queue.push(job);
  }

  private async load(customerId: string): Promise<Active> {
    const rows = await this.o.repo.active(customerId, new Date(this.o.now()));
    if (rows.length === 0) return NONE;
    let split: ActiveSplit | undefined;
    let shadow: ActiveShadow | undefined;
    for (const r of rows) {
      const from = r.startsAt?.getTime() ?? Number.NEGATIVE_INFINITY;
      const until = r.endsAt?.getTime() ?? Number.POSITIVE_INFINITY;
      if (r.mode === "split" && r.variants !== null) {
        split = {
          id: r.id,
          assignment: r.assignment === "request" ? "request" : "robot_id",
          variants: r.variants,
          from,
          until,
        };
      } else if (r.mode === "shadow" && r.candidateModel !== null) {
        shadow = { id: r.id, model: r.candidateModel, rate: r.sampleRate ?? 0, from, until };
      }
    }
    return split === undefined && shadow === undefined ? NONE : { split, shadow };
  }

  /** Runs one shadow job: the candidate model, its verdict (no side effects), the distances. */
  private async runShadow(job: ShadowJob): Promise<void> {
    const started = performance.now();
    const customerId = job.principal.customerId;
    const base = {
      id: randomUUID(),
      experimentId: job.experimentId,
      customerId,
      inferenceId: job.inferenceId,
      robotId: job.robotId === undefined ? null : job.robotId.slice(0, 128),
      instructionKey: job.instructionKey,
      servedModel: job.servedModel,
      candidateModel: job.candidateModel,
      servedAction: [...job.servedAction],
      servedSafetyStatus: job.servedSafetyStatus,
    };
    try {
      const result = await this.o.engine.infer({
        model: job.candidateModel,
        instruction: job.instruction,
        unnormKey: job.unnormKey,
        customerId,
        viewer: job.principal,
        ...job.image,
      });
      const candidateMs = performance.now() - started;
      const judge = this.o.safety?.judge;
      const verdict =
        judge === undefined
          ? "not_evaluated"
          : (
              await judge.call(this.o.safety, {
                customerId,
                robotId: job.robotId,
                inferenceId: job.inferenceId,
                modelId: safetyModelId(result),
                unnormKey: result.unnormKey,
                decoded: { action: result.action, actionChunk: result.actionChunk },
                robotState: job.robotState,
                previousAction: job.previousAction,
                admission: job.admission,
              })
            ).status;
      const d = actionDistances(job.servedAction, result.action);
      this.o.sink.push({
        ...base,
        createdAt: new Date(this.o.now()).toISOString(),
        candidateAction: [...result.action],
        candidateSafetyStatus: verdict,
        translation: d?.translation ?? null,
        rotation: d?.rotation ?? null,
        gripper: d?.gripper ?? null,
        candidateMs: round3(candidateMs),
        errorCode: null,
      });
    } catch (e) {
      this.o.sink.push({
        ...base,
        createdAt: new Date(this.o.now()).toISOString(),
        candidateAction: null,
        candidateSafetyStatus: null,
        translation: null,
        rotation: null,
        gripper: null,
        candidateMs: round3(performance.now() - started),
        errorCode: e instanceof AppError ? e.code : "internal_error",
      });
      throw e;
    }
  }

  // ---- management -----------------------------------------------------------------------------

  async create(principal: Principal, body: CreateExperimentBody): Promise<ExperimentRow> {
    const now = this.o.now();
    const mode = body.mode ?? "split";
    const fails: FieldError[] = [];
    const fail = (path: string, message: string) => fails.push({ in: "body", path, message });
    // The service's models the caller may use and its own registered endpoints (docs/models.md).
    const allowed = new Set([
      ...this.o.engine.modelIds(principal),
      ...this.o.engine.customerModelIds(principal.customerId),
    ]);
    const startsAt = body.starts_at === undefined ? null : new Date(body.starts_at);
    const endsAt = body.ends_at === undefined ? null : new Date(body.ends_at);
    if (endsAt !== null && endsAt.getTime() <= now) fail("/ends_at", "must be in the future");
    if (startsAt !== null && endsAt !== null && !(startsAt.getTime() < endsAt.getTime())) {
      fail("/ends_at", "must be after starts_at");
    }
    let variants: ExperimentVariant[] | null = null;
    if (mode === "split") {
      if (body.candidate_model !== undefined) fail("/candidate_model", "belongs to mode shadow");
      if (body.sample_rate !== undefined) fail("/sample_rate", "belongs to mode shadow");
      if (body.variants === undefined || body.variants.length < 2) {
        fail("/variants", "a split experiment needs at least 2 variants");
      } else {
        variants = body.variants.map((v) => ({ name: v.name ?? v.model, model: v.model, weight: v.weight }));
        const seen = new Set<string>();
        variants.forEach((v, i) => {
          if (!allowed.has(v.model)) fail(`/variants/${i}/model`, `is not a model you may use: ${v.model}`);
          if (seen.has(v.name)) fail(`/variants/${i}/name`, `is not unique: ${v.name}`);
          seen.add(v.name);
        });
      }
    } else {
      if (body.variants !== undefined) fail("/variants", "belongs to mode split");
      if (body.assignment !== undefined) fail("/assignment", "belongs to mode split");
      if (body.candidate_model === undefined) fail("/candidate_model", "is required for mode shadow");
      else if (!allowed.has(body.candidate_model)) {
        fail("/candidate_model", `is not a model you may use: ${body.candidate_model}`);
      }
      if (body.sample_rate === undefined) fail("/sample_rate", "is required for mode shadow");
    }
    if (fails.length > 0) throw errors.validation(fails);
    const row = await this.o.repo.insert(
      {
        customerId: principal.customerId,
        name: body.name,
        mode,
        assignment: mode === "split" ? (body.assignment ?? "robot_id") : null,
        variants,
        candidateModel: mode === "shadow" ? (body.candidate_model ?? null) : null,
        sampleRate: mode === "shadow" ? (body.sample_rate ?? null) : null,
        startsAt,
        endsAt,
        createdByUserId: principal.userId,
        createdByApiKeyId: principal.apiKeyId,
      },
      new Date(now),
    );
    if (row === null) throw errors.experimentRunning(mode);
    await this.o.invalidation.publish(EXPERIMENTS_TOPIC, principal.customerId);
    return row;
  }

  async get(customerId: string, id: string): Promise<ExperimentRow> {
    const row = await this.o.repo.get(customerId, id);
    if (row === undefined) throw errors.notFound("Experiment");
    return row;
  }

  list(customerId: string, cursor: PageCursor | undefined, limit: number): Promise<ExperimentRow[]> {
    return this.o.repo.list(customerId, cursor, limit);
  }

  async stop(customerId: string, id: string): Promise<ExperimentRow> {
    const row = await this.o.repo.stop(customerId, id, new Date(this.o.now()));
    if (row === undefined) throw errors.notFound("Experiment");
    await this.o.invalidation.publish(EXPERIMENTS_TOPIC, customerId);
    return row;
  }

  // ---- results ------------------------------------------------------------------------------

  async results(customerId: string, id: string) {
    const row = await this.get(customerId, id);
    if (row.mode !== "split" || row.variants === null) {
      throw errors.conflict("A shadow experiment has no variants to compare; see GET /v1/experiments/{id}/shadow.");
    }
    const w = logWindow(row);
    // Robot-assigned: the robot is the unit that was randomized, and one robot's inferences are
    // alike, so the tests count robots (cluster-robust); per-request draws count inferences.
    const byRobot = row.assignment === "robot_id";
    const [requests, feedback, outcomes, units] = await Promise.all([
      this.o.repo.requestStats(customerId, id, w),
      this.o.repo.feedbackStats(customerId, id, w),
      this.o.repo.outcomeStats(customerId, id, w),
      byRobot ? this.o.repo.unitStats(customerId, id, w) : [],
    ]);
    const byName = <T extends { variant: string }>(rows: T[]) => new Map(rows.map((r) => [r.variant, r]));
    const req = byName<VariantRequestRow>(requests);
    const fb = byName<VariantFeedbackRow>(feedback);
    const out = byName<VariantOutcomeRow>(outcomes);
    const unit = byName<VariantUnitRow>(units);
    const control = row.variants[0] as ExperimentVariant;
    const views = row.variants.map((v) => variantView(v, req.get(v.name), fb.get(v.name), out.get(v.name)));
    const c = views[0] as ReturnType<typeof variantView>;
    const cu = clusteredSamples(unit.get(control.name));
    const rate = (o: { n: number; successes: number }) => (o.n === 0 ? null : o.successes / o.n);
    return {
      experiment_id: row.id,
      status: statusOf(row, this.o.now()),
      control: control.name,
      variants: views.map((v, i) => {
        if (i === 0) return { ...v.view, vs_control: null };
        const rating = [c.rating.mean, v.rating.mean] as const;
        const success = [rate(c.outcome), rate(v.outcome)] as const;
        if (!byRobot) {
          return {
            ...v.view,
            vs_control: {
              rating: comparison("inference", welchTTest(c.rating, v.rating), c.rating.n, v.rating.n, ...rating),
              success_rate: comparison(
                "inference",
                twoProportionZTest(c.outcome, v.outcome),
                c.outcome.n,
                v.outcome.n,
                ...success,
              ),
            },
          };
        }
        const vu = clusteredSamples(unit.get(v.view.name));
        return {
          ...v.view,
          vs_control: {
            rating: comparison(
              "robot",
              clusterRobustTTest(cu.rating, vu.rating),
              cu.rating.units,
              vu.rating.units,
              ...rating,
            ),
            success_rate: comparison(
              "robot",
              clusterRobustTTest(cu.outcome, vu.outcome),
              cu.outcome.units,
              vu.outcome.units,
              ...success,
            ),
          },
        };
      }),
    };
  }

  // ---- shadow -------------------------------------------------------------------------------

  async shadowResults(
    customerId: string,
    id: string,
    filter: { robotId?: string | undefined; instruction?: string | undefined },
    cursor: PageCursor | undefined,
    limit: number,
  ) {
    const row = await this.get(customerId, id);
    if (row.mode !== "shadow") {
      throw errors.conflict("A split experiment has no shadow records; see GET /v1/experiments/{id}/results.");
    }
    const f: ShadowFilter = {
      robotId: filter.robotId,
      instructionKey: filter.instruction === undefined ? undefined : instructionKey(filter.instruction),
    };
    const [rows, s] = await Promise.all([
      this.o.repo.listShadow(id, f, cursor, limit),
      this.o.repo.shadowSummary(id, f),
    ]);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      summary: {
        n: s.n,
        errors: s.errors,
        translation: { mean: s.translation_mean, p95: s.translation_p95 },
        rotation: { mean: s.rotation_mean, p95: s.rotation_p95 },
        gripper: { mean: s.gripper_mean, p95: s.gripper_p95 },
        candidate_ms_mean: round3(s.candidate_ms_mean),
        candidate_safety: {
          pass: s.pass,
          clamped: s.clamped,
          rejected: s.rejected,
          emergency_stop: s.emergency_stop,
          not_evaluated: s.not_evaluated,
        },
      },
      data: page.map(shadowView),
      next: rows.length > limit && last !== undefined ? { createdAt: last.createdAt.toISOString(), id: last.id } : null,
    };
  }
}

/** Clock skew between instances and the database, and caches that had not yet seen a stop. */
const WINDOW_SLACK_MS = 86_400_000;

/**
 * When an experiment's log rows can have been written: from its creation (nothing routes to it
 * before) to its stop or end, a day of slack either side. Bounds the results queries so the
 * monthly inference_logs partitions outside it are pruned.
 */
export function logWindow(row: ExperimentRow): LogWindow {
  const ends = [row.stoppedAt, row.endsAt].filter((d): d is Date => d !== null).map((d) => d.getTime());
  return {
    from: new Date(row.createdAt.getTime() - WINDOW_SLACK_MS),
    until: ends.length === 0 ? null : new Date(Math.min(...ends) + WINDOW_SLACK_MS),
  };
}

function variantView(
  v: ExperimentVariant,
  r: VariantRequestRow | undefined,
  f: VariantFeedbackRow | undefined,
  o: VariantOutcomeRow | undefined,
) {
  const n = r?.n ?? 0;
  const outcome = { n: o?.outcomes ?? 0, successes: o?.successes ?? 0 };
  // The rating test's unit is the inference (the mean of its success ratings), like the outcome's.
  const rating = { n: o?.rated_inferences ?? 0, mean: o?.rating_mean ?? 0, variance: o?.rating_var ?? 0 };
  return {
    rating,
    outcome,
    view: {
      name: v.name,
      model: v.model,
      weight: v.weight,
      requests: n,
      errors: r?.errors ?? 0,
      error_rate: n === 0 ? null : (r?.errors ?? 0) / n,
      latency_ms: { mean: round3(r?.mean_ms ?? null), p50: round3(r?.p50_ms ?? null), p95: round3(r?.p95_ms ?? null) },
      safety: {
        pass: r?.pass ?? 0,
        clamped: r?.clamped ?? 0,
        rejected: r?.rejected ?? 0,
        emergency_stop: r?.emergency_stop ?? 0,
        not_evaluated: r?.not_evaluated ?? 0,
      },
      feedback: {
        rated: f?.rated ?? 0,
        mean_rating: f?.rating_mean ?? null,
        safety_rated: f?.safety_rated ?? 0,
        mean_safety_rating: f?.safety_mean ?? null,
        outcomes: outcome.n,
        successes: outcome.successes,
        success_rate: outcome.n === 0 ? null : outcome.successes / outcome.n,
        corrections: f?.corrections ?? 0,
        correction_magnitude: {
          translation: f?.translation_mean ?? null,
          rotation: f?.rotation_mean ?? null,
          gripper: f?.gripper_mean ?? null,
        },
      },
    },
  };
}

/** A variant's unit sums as the two samples of the cluster-robust tests (all zero without feedback). */
function clusteredSamples(u: VariantUnitRow | undefined): { rating: ClusteredSample; outcome: ClusteredSample } {
  const sample = (p: "rating" | "outcome"): ClusteredSample => ({
    units: u?.[`${p}_units`] ?? 0,
    n: u?.[`${p}_n`] ?? 0,
    sum: u?.[`${p}_sum`] ?? 0,
    sumSq: u?.[`${p}_sum_sq`] ?? 0,
    sumCross: u?.[`${p}_cross`] ?? 0,
    countSq: u?.[`${p}_count_sq`] ?? 0,
  });
  return { rating: sample("rating"), outcome: sample("outcome") };
}

function comparison(
  unit: "inference" | "robot",
  test: TestResult | null,
  nControl: number,
  nVariant: number,
  control: number | null,
  variant: number | null,
) {
  return {
    test: test?.test ?? null,
    unit,
    n_control: nControl,
    n_variant: nVariant,
    difference: control === null || variant === null || nControl === 0 || nVariant === 0 ? null : variant - control,
    statistic: test?.statistic ?? null,
    df: test?.df ?? null,
    p_value: test?.p_value ?? null,
  };
}

function shadowView(r: ShadowResultRow) {
  return {
    id: r.id,
    created_at: r.createdAt.toISOString(),
    inference_id: r.inferenceId,
    robot_id: r.robotId,
    instruction_key: r.instructionKey,
    served_model: r.servedModel,
    candidate_model: r.candidateModel,
    served_action: r.servedAction,
    served_safety_status: r.servedSafetyStatus,
    candidate_action: r.candidateAction,
    candidate_safety_status: r.candidateSafetyStatus,
    distance: r.translation === null ? null : { translation: r.translation, rotation: r.rotation, gripper: r.gripper },
    candidate_ms: r.candidateMs,
    error_code: r.errorCode,
  };
}

export function experimentView(r: ExperimentRow, now: number) {
  return {
    id: r.id,
    name: r.name,
    mode: r.mode as "split" | "shadow",
    status: statusOf(r, now),
    assignment: r.assignment as "robot_id" | "request" | null,
    variants: r.variants,
    candidate_model: r.candidateModel,
    sample_rate: r.sampleRate,
    starts_at: r.startsAt?.toISOString() ?? null,
    ends_at: r.endsAt?.toISOString() ?? null,
    stopped_at: stoppedEarly(r) ? (r.stoppedAt?.toISOString() ?? null) : null,
    created_at: r.createdAt.toISOString(),
  };
}
