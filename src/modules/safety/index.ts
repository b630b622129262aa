/** The safety module's public surface (framework-free; routes and wiring come later). */
export type { EstopRecord, EstopRegistry } from "./estop.ts";
export { createEstopRegistry, MemoryEstopRegistry, RedisEstopRegistry } from "./estop.ts";
export type { ClassifierOptions } from "./evaluator.ts";
export {
  evaluate,
  evaluateSync,
  notEvaluated,
  SEVERITY_THRESHOLDS,
  severityFromExcess,
  severityFromRisk,
  worstSeverity,
  zoneDistance,
} from "./evaluator.ts";
export type { IncidentRow } from "./incidents.ts";
export { incidentsFromResult } from "./incidents.ts";
export type { ActionMoments, OodOptions } from "./ood-classifier.ts";
export { momentsFromDatasetStatistics, OodClassifier } from "./ood-classifier.ts";
export type {
  KeepOutZone,
  PolicyAction,
  ProfileResult,
  SafetyProfile,
  SafetyProfileInput,
  Severity,
} from "./profile.ts";
export {
  datasetGripperRange,
  defaultProfile,
  EMBODIMENT_DEFAULTS,
  EXAMPLE_PROFILE,
  GLOBAL_DEFAULT_PROFILE,
  modelDefaultProfile,
  resolveProfile,
  SafetyProfileInputSchema,
  UNNORM_KEY_EMBODIMENT,
} from "./profile.ts";
export type { RobotStateStore, StateStoreOptions } from "./robot-state-store.ts";
export { createRobotStateStore, MemoryRobotStateStore, RedisRobotStateStore } from "./robot-state-store.ts";
export type { SafetyMetrics } from "./safety.metrics.ts";
export { createSafetyMetrics } from "./safety.metrics.ts";
export type { IncidentFilter, IncidentPage, RobotRecord, SafetySummary, StoredIncident } from "./safety.repo.ts";
export { InvalidCursorError, SafetyRepo } from "./safety.repo.ts";
export { RobotStateSchema, SafetyResultSchema } from "./safety.schemas.ts";
export type * from "./types.ts";
export { VIOLATION_TYPES } from "./types.ts";
