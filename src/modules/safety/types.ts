import type { SafetyProfile, Severity } from "./profile.ts";

export type ViolationType =
  | "invalid_action"
  | "workspace"
  | "linear_velocity"
  | "angular_velocity"
  | "linear_acceleration"
  | "angular_acceleration"
  | "collision"
  | "gripper"
  | "classifier";

export const VIOLATION_TYPES: readonly ViolationType[] = [
  "invalid_action",
  "workspace",
  "linear_velocity",
  "angular_velocity",
  "linear_acceleration",
  "angular_acceleration",
  "collision",
  "gripper",
  "classifier",
];

export interface Violation {
  readonly type: ViolationType;
  readonly severity: Severity;
  /** What was measured (units of the limit: m/s, rad/s, m/s², rad/s², m, gripper units, σ...). */
  readonly measured: number;
  readonly limit: number;
  /** Index in the chunk (0 for a single action). */
  readonly step: number;
  readonly message: string;
}

export interface SkippedCheck {
  readonly check: string;
  readonly reason: string;
}

export interface RobotState {
  /** End-effector position [x, y, z] in metres, robot base frame. */
  readonly ee_position?: readonly number[] | undefined;
  /** Orientation (any representation); carried for classifiers, not used by the rules. */
  readonly ee_orientation?: readonly number[] | undefined;
  readonly gripper?: number | undefined;
}

export type ActionTaken = "none" | "clamped" | "rejected" | "emergency_stop";
export type SafetyStatus = "pass" | "clamped" | "rejected" | "emergency_stop" | "not_evaluated";

export type Action = readonly number[];
export type ActionChunk = readonly (readonly number[])[];

export interface SafetyResult {
  readonly status: SafetyStatus;
  readonly violations: readonly Violation[];
  readonly action_taken: ActionTaken;
  /** The action as the model produced it (same shape as the input: 7-D or H x 7). */
  readonly raw_action: Action | ActionChunk;
  /** The safe action to send (same shape as raw_action). */
  readonly action: Action | ActionChunk;
  readonly skipped: readonly SkippedCheck[];
  /** Why the action was rejected / stopped / left unchanged despite violations. */
  readonly reason?: string;
}

export interface EvaluationInput {
  /** A decoded 7-D action or an H x 7 chunk (typed arrays such as Float32Array are accepted too). */
  readonly action: Action | ActionChunk;
  readonly profile: SafetyProfile;
  readonly robotState?: RobotState | undefined;
  /** The last action sent to the same robot within the last few control periods, or none. */
  readonly previousAction?: Action | null | undefined;
}

export interface ClassifierContext {
  /** The steps (a single action is one step), already checked to be finite 7-D. */
  readonly steps: ActionChunk;
  readonly profile: SafetyProfile;
  readonly robotState?: RobotState | undefined;
  readonly previousAction?: Action | null | undefined;
  readonly modelId?: string | undefined;
  readonly unnormKey?: string | undefined;
}

export interface ClassifierResult {
  /** 0 (safe) .. 1 (certainly unsafe). */
  readonly risk: number;
  readonly label: string;
  readonly reasons: readonly string[];
  /** Overrides the severity derived from `risk`. */
  readonly severity?: Severity | undefined;
  readonly measured?: number | undefined;
  readonly limit?: number | undefined;
  /** Set when the classifier could not judge this input (reported in `skipped`, no violation). */
  readonly skipped?: string | undefined;
}

/** A pluggable risk classifier. May answer synchronously (no timer is then needed). */
export interface SafetyClassifier {
  readonly name: string;
  classify(context: ClassifierContext): Promise<ClassifierResult> | ClassifierResult;
}
