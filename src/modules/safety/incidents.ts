import type { Severity } from "./profile.ts";
import type { ActionTaken, SafetyResult, ViolationType } from "./types.ts";

/** One `safety_incidents` row to insert: one per violation of an evaluated action. */
export interface IncidentRow {
  readonly customerId: string;
  readonly robotId: string;
  readonly inferenceId: string | null;
  readonly violationType: ViolationType;
  readonly severity: Severity;
  readonly actionTaken: ActionTaken;
  readonly measured: number | null;
  readonly limit: number | null;
  readonly step: number;
  readonly message: string | null;
  readonly at: Date;
}

const finiteOrNull = (x: number) => (Number.isFinite(x) ? x : null);

/** The incident rows of one evaluation (none when it passed without violations). */
export function incidentsFromResult(
  result: SafetyResult,
  who: { readonly customerId: string; readonly robotId: string; readonly inferenceId?: string | null | undefined },
  at: Date = new Date(),
): IncidentRow[] {
  return result.violations.map((v) => ({
    customerId: who.customerId,
    robotId: who.robotId,
    inferenceId: who.inferenceId ?? null,
    violationType: v.type,
    severity: v.severity,
    actionTaken: result.action_taken,
    measured: finiteOrNull(v.measured),
    limit: finiteOrNull(v.limit),
    step: v.step,
    message: v.message.slice(0, 500),
    at,
  }));
}
