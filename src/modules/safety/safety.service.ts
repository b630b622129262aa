import type { Config } from "../../config.ts";
import { errors } from "../../platform/errors.ts";
import type { InvalidationBus } from "../../platform/invalidation.ts";
import type { SafetyCheck, SafetyGate, SafetyOutcome } from "../inference/inference-runner.ts";
import type { ArrayStats, DatasetStatistics } from "../models/dataset-statistics.ts";
import type { EstopRecord, EstopRegistry, StoppedRobot } from "./estop.ts";
import { evaluate, evaluateSync } from "./evaluator.ts";
import { type IncidentRow, incidentsFromResult } from "./incidents.ts";
import { momentsFromDatasetStatistics, OodClassifier } from "./ood-classifier.ts";
import { modelDefaultProfile, resolveProfile, type SafetyProfile } from "./profile.ts";
import { type RobotStateStore, type StoredAction, validityMs } from "./robot-state-store.ts";
import type { SafetyMetrics } from "./safety.metrics.ts";
import type { SafetyRepo } from "./safety.repo.ts";
import type { ActionChunk, SafetyClassifier, SafetyResult } from "./types.ts";

/** Robot id recorded on incidents of requests that named no robot (e.g. `/act` without `X-Robot-Id`). */
export const UNIDENTIFIED_ROBOT = "(unidentified)";

export const PROFILE_TOPIC = "safety-profile";

type SafetySettings = Config["safety"];

/** The safety settings of the config (classifiers, OOD k, timeouts, caches) plus the service's collaborators. */
export interface SafetyServiceOptions extends SafetySettings {
  readonly repo: SafetyRepo;
  readonly estops: EstopRegistry;
  readonly states: RobotStateStore;
  readonly incidents: { push(row: IncidentRow): void };
  readonly lastSeen: { push(row: { customerId: string; robotId: string; at: string }): void };
  readonly metrics: SafetyMetrics;
  readonly invalidation: InvalidationBus;
  /** The model's dataset statistics (for the OOD classifier); throws for unknown models. */
  readonly statistics: (modelId: string) => DatasetStatistics;
  readonly now: () => number;
}

/** What `admit` learned, handed back to `check`. */
interface Admission {
  readonly previous: StoredAction | undefined;
}

interface CachedProfile {
  /** The stored API form, or null when the robot has none (defaults apply). */
  readonly stored: Record<string, unknown> | null;
  readonly at: number;
}

const cacheKey = (customerId: string, robotId: string) => `${customerId}\u0000${robotId}`;
/** Last-seen writes per robot at most this often (the column has no use for finer resolution). */
const LAST_SEEN_EVERY_MS = 1_000;
const MAX_CACHED = 100_000;

/**
 * The safety gate of every inference path: refuses stopped robots, evaluates each decoded action
 * (rules + classifiers) against the robot's profile and previous action, applies the policy,
 * records incidents, stops robots on `emergency_stop`, and remembers the action sent.
 */
export class SafetyService implements SafetyGate {
  private readonly o: SafetyServiceOptions;
  private readonly profiles = new Map<string, CachedProfile>();
  private readonly resolved = new Map<string, SafetyProfile>();
  private readonly classifierByModel = new Map<string, readonly SafetyClassifier[]>();
  private readonly seenAt = new Map<string, number>();
  private readonly bases = new Map<string, SafetyProfile>();

  constructor(options: SafetyServiceOptions) {
    this.o = options;
    options.invalidation.on(PROFILE_TOPIC, (id) => {
      this.profiles.delete(id);
      this.resolved.clear();
    });
    options.invalidation.onReset(() => {
      this.profiles.clear();
      this.resolved.clear();
    });
  }

  /**
   * 409 robot_stopped for a robot under emergency stop. Runs while the model runs, and prefetches
   * the robot's previous action in the same breath (both are Redis round trips when configured).
   */
  async admit(customerId: string, robotId: string | undefined, wantPrevious: boolean): Promise<Admission> {
    if (robotId === undefined) return { previous: undefined };
    const [stop, previous] = await Promise.all([
      this.o.estops.check(customerId, robotId),
      wantPrevious ? this.o.states.getEntry(customerId, robotId) : undefined,
    ]);
    if (stop !== undefined) throw errors.robotStopped(robotId, stop.at, stop.reason);
    return { previous };
  }

  async check(input: SafetyCheck): Promise<SafetyOutcome> {
    const { customerId, robotId } = input;
    const profile = await this.profileFor(customerId, robotId, input.unnormKey, input.modelId);
    const chunk = input.decoded.actionChunk;
    const subject = chunk !== undefined && chunk.length > 0 ? chunk : input.decoded.action;

    let previous: readonly number[] | null | undefined = input.previousAction;
    const fromStore = previous === undefined;
    if (fromStore) {
      const admitted = input.admission as Admission | undefined;
      const entry =
        admitted !== undefined
          ? admitted.previous
          : robotId === undefined
            ? undefined
            : await this.o.states.getEntry(customerId, robotId);
      const fresh =
        entry !== undefined && this.o.now() - entry.at < validityMs(profile.control_hz, this.o.previousActionPeriods);
      previous = fresh ? entry.action : null;
    }

    const classifiers = this.classifiersFor(input.modelId);
    const evalInput = { action: subject, profile, robotState: input.robotState, previousAction: previous };
    const result =
      classifiers.length === 0
        ? evaluateSync(evalInput)
        : await evaluate(evalInput, {
            classifiers,
            timeoutMs: this.o.classifierTimeoutMs,
            failMode: this.o.classifierFailMode,
            modelId: input.modelId,
            unnormKey: input.unnormKey,
          });

    this.o.metrics.record(result);
    const robot = robotId ?? UNIDENTIFIED_ROBOT;
    if (result.violations.length > 0) {
      const at = new Date(this.o.now());
      for (const row of incidentsFromResult(result, { customerId, robotId: robot, inferenceId: input.inferenceId }, at))
        this.o.incidents.push(row);
    }

    const safe = shapeOf(result, chunk !== undefined && chunk.length > 0);
    if (robotId !== undefined) {
      if (result.status === "emergency_stop") {
        const record: EstopRecord = {
          at: new Date(this.o.now()).toISOString(),
          reason: stopReason(result),
          inferenceId: input.inferenceId,
        };
        await this.o.estops.stop(customerId, robotId, record);
      }
      // Streams keep their own previous action; REST remembers what was sent (the last step of a chunk).
      if (fromStore) {
        const last = safe.actionChunk === undefined ? safe.action : safe.actionChunk[safe.actionChunk.length - 1];
        // Not awaited: the robot's next request is a control period away; the store swallows failures.
        if (last !== undefined) void this.o.states.set(customerId, robotId, last, profile.control_hz);
      }
      this.touch(customerId, robotId);
    }
    return { action: safe.action, actionChunk: safe.actionChunk, safety: result };
  }

  /** `check`'s verdict without its side effects (SafetyGate.judge): for shadow candidates. */
  async judge(input: SafetyCheck): Promise<SafetyResult> {
    const profile = await this.profileFor(input.customerId, input.robotId, input.unnormKey, input.modelId);
    const chunk = input.decoded.actionChunk;
    const subject = chunk !== undefined && chunk.length > 0 ? chunk : input.decoded.action;
    let previous: readonly number[] | null | undefined = input.previousAction;
    if (previous === undefined) {
      const entry = (input.admission as Admission | undefined)?.previous;
      const fresh =
        entry !== undefined && this.o.now() - entry.at < validityMs(profile.control_hz, this.o.previousActionPeriods);
      previous = fresh ? entry.action : null;
    }
    const classifiers = this.classifiersFor(input.modelId);
    const evalInput = { action: subject, profile, robotState: input.robotState, previousAction: previous };
    return classifiers.length === 0
      ? evaluateSync(evalInput)
      : evaluate(evalInput, {
          classifiers,
          timeoutMs: this.o.classifierTimeoutMs,
          failMode: this.o.classifierFailMode,
          modelId: input.modelId,
          unnormKey: input.unnormKey,
        });
  }

  /**
   * The defaults a model's actions are judged against for an unnorm key (`modelDefaultProfile`:
   * the embodiment default with the gripper range of the model's statistics). The gate and the
   * profile view both come through here.
   */
  baseProfile(modelId: string | undefined, unnormKey: string | undefined): SafetyProfile {
    const k = `${modelId ?? ""}\u0000${unnormKey ?? ""}`;
    const hit = this.bases.get(k);
    if (hit !== undefined) return hit;
    let action: ArrayStats | undefined;
    if (modelId !== undefined && unnormKey !== undefined) {
      try {
        action = this.o.statistics(modelId).entries.get(unnormKey)?.action;
      } catch {
        action = undefined;
      }
    }
    const base = modelDefaultProfile(unnormKey, action);
    if (this.bases.size >= 10_000) this.bases.clear();
    this.bases.set(k, base);
    return base;
  }

  /** The effective profile of a robot: its stored profile over the defaults for the model. */
  async profileFor(
    customerId: string,
    robotId: string | undefined,
    unnormKey?: string,
    modelId?: string,
  ): Promise<SafetyProfile> {
    const base = this.baseProfile(modelId, unnormKey);
    if (robotId === undefined) return base;
    const stored = await this.storedProfile(customerId, robotId);
    if (stored === null) return base;
    const rk = `${cacheKey(customerId, robotId)}\u0000${modelId ?? ""}\u0000${unnormKey ?? ""}`;
    const hit = this.resolved.get(rk);
    if (hit !== undefined) return hit;
    const r = resolveProfile(stored, base);
    // A stored profile was valid when written; should defaults change so that it no longer is, the
    // stricter default applies rather than an unchecked profile.
    const profile = r.ok ? r.profile : base;
    if (this.resolved.size >= MAX_CACHED) this.resolved.clear();
    this.resolved.set(rk, profile);
    return profile;
  }

  /** The stored API form (null when none), through the in-process cache. */
  async storedProfile(customerId: string, robotId: string): Promise<Record<string, unknown> | null> {
    const k = cacheKey(customerId, robotId);
    const now = this.o.now();
    const hit = this.profiles.get(k);
    if (hit !== undefined && now - hit.at < this.o.profileCacheMs) return hit.stored;
    const stored = (await this.o.repo.getProfile(customerId, robotId)) ?? null;
    if (this.profiles.size >= MAX_CACHED) this.profiles.clear();
    this.profiles.set(k, { stored, at: now });
    if (hit === undefined || JSON.stringify(hit.stored) !== JSON.stringify(stored)) this.dropResolved(k);
    return stored;
  }

  /** After a PUT or DELETE of a profile: this instance at once, the others through the bus. */
  async profileChanged(customerId: string, robotId: string): Promise<void> {
    await this.o.invalidation.publish(PROFILE_TOPIC, cacheKey(customerId, robotId));
  }

  async stopOf(customerId: string, robotId: string): Promise<EstopRecord | undefined> {
    return this.o.estops.check(customerId, robotId);
  }

  async stoppedRobots(customerId: string): Promise<ReadonlyMap<string, EstopRecord>> {
    return this.o.estops.list(customerId);
  }

  /** Every customer's stopped robots, at most `max` (operators). */
  async stoppedEverywhere(max: number): Promise<StoppedRobot[]> {
    return this.o.estops.listAll(max);
  }

  /** Clears an emergency stop and the robot's previous action (motion restarts from rest). */
  async clearStop(customerId: string, robotId: string): Promise<boolean> {
    const had = await this.o.estops.clear(customerId, robotId);
    await this.o.states.delete(customerId, robotId);
    return had;
  }

  /**
   * After a model registry reload: what was derived from models' dataset statistics (default
   * profiles, resolved profiles, OOD classifiers) is computed again from the new definitions.
   */
  forgetModels(): void {
    this.bases.clear();
    this.resolved.clear();
    this.classifierByModel.clear();
  }

  /** After the customer's deletion: its stops and cached profiles go too. */
  async forgetCustomer(customerId: string): Promise<void> {
    for (const robotId of (await this.o.estops.list(customerId)).keys()) await this.o.estops.clear(customerId, robotId);
    const prefix = `${customerId}\u0000`;
    for (const k of [...this.profiles.keys()]) if (k.startsWith(prefix)) this.profiles.delete(k);
    for (const k of [...this.seenAt.keys()]) if (k.startsWith(prefix)) this.seenAt.delete(k);
    this.resolved.clear();
  }

  private dropResolved(prefix: string): void {
    for (const k of this.resolved.keys()) if (k.startsWith(prefix)) this.resolved.delete(k);
  }

  private classifiersFor(modelId: string): readonly SafetyClassifier[] {
    let list = this.classifierByModel.get(modelId);
    if (list !== undefined) return list;
    const out: SafetyClassifier[] = [];
    if (this.o.classifiers.includes("ood")) {
      let stats: DatasetStatistics | undefined;
      try {
        stats = this.o.statistics(modelId);
      } catch {
        stats = undefined;
      }
      if (stats !== undefined) {
        const moments = momentsFromDatasetStatistics(stats);
        if (moments.size > 0) out.push(new OodClassifier({ stats: moments, k: this.o.oodK }));
      }
    }
    list = out;
    this.classifierByModel.set(modelId, list);
    return list;
  }

  private touch(customerId: string, robotId: string): void {
    const k = cacheKey(customerId, robotId);
    const now = this.o.now();
    const last = this.seenAt.get(k);
    if (last !== undefined && now - last < LAST_SEEN_EVERY_MS) return;
    if (this.seenAt.size >= MAX_CACHED) this.seenAt.clear();
    this.seenAt.set(k, now);
    this.o.lastSeen.push({ customerId, robotId, at: new Date(now).toISOString() });
  }
}

function shapeOf(
  result: SafetyResult,
  isChunk: boolean,
): { action: readonly number[]; actionChunk?: readonly (readonly number[])[] } {
  if (!isChunk) return { action: result.action as readonly number[] };
  const chunk = result.action as ActionChunk;
  return { action: chunk[0] as readonly number[], actionChunk: chunk };
}

function stopReason(result: SafetyResult): string {
  const critical = result.violations.find((v) => v.severity === "critical") ?? result.violations[0];
  return (critical?.message ?? result.reason ?? "emergency stop").slice(0, 300);
}
