import { Counter, type Registry } from "prom-client";
import type { SafetyResult } from "./types.ts";

/** Safety counters, registered into the given (per-app) registry. */
export interface SafetyMetrics {
  readonly violations: Counter<"type" | "severity">;
  readonly evaluations: Counter<"status">;
  /** Count one evaluation and each of its violations. */
  record(result: SafetyResult): void;
}

export function createSafetyMetrics(registry: Registry): SafetyMetrics {
  const violations = new Counter({
    name: "vla_safety_violations_total",
    help: "Safety violations found on returned actions, by violation type and severity.",
    labelNames: ["type", "severity"] as const,
    registers: [registry],
  });
  const evaluations = new Counter({
    name: "vla_safety_evaluations_total",
    help: "Safety evaluations by resulting status (pass, clamped, rejected, emergency_stop, not_evaluated).",
    labelNames: ["status"] as const,
    registers: [registry],
  });
  return {
    violations,
    evaluations,
    record(result) {
      evaluations.inc({ status: result.status });
      for (const v of result.violations) violations.inc({ type: v.type, severity: v.severity });
    },
  };
}
