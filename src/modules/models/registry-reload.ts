import { AppError } from "../../platform/errors.ts";
import type { InferenceEngine, RegistryChange } from "../inference/inference.service.ts";

/** Invalidation-bus topic: "reload the model registry" (POST /admin/models/reload on another instance). */
export const RELOAD_TOPIC = "models.reload";

/** What asked for the reload, in its log line. */
export type ReloadTrigger = "api" | "sighup" | "broadcast";

export interface ReloadLog {
  info(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** The registry's problems carried by a refused reload (invalid_registry, model_warm_up_failed); [] otherwise. */
export function problemsOf(e: unknown): readonly string[] {
  const p = e instanceof AppError ? e.extensions.problems : undefined;
  return Array.isArray(p) ? p.map(String) : [];
}

/** The wire form of a reload's result (snake_case, as the admin route answers). */
export function changeView(change: RegistryChange) {
  return {
    added: change.added,
    changed: change.changed,
    removed: change.removed,
    unchanged: change.unchanged,
    default_model: change.defaultModel,
    previous_default_model: change.previousDefaultModel,
    duration_ms: change.durationMs,
  };
}

/** Logs what a reload did (info) or why it was refused (error, with every problem). */
export function logReload(log: ReloadLog, trigger: ReloadTrigger, outcome: RegistryChange | unknown): void {
  if (outcome !== null && typeof outcome === "object" && "unchanged" in outcome) {
    log.info({ trigger, ...changeView(outcome as RegistryChange) }, "model registry reloaded");
    return;
  }
  const code = outcome instanceof AppError ? outcome.code : "internal_error";
  const problems = problemsOf(outcome);
  log.error(
    { trigger, code, problems, ...(outcome instanceof AppError ? {} : { err: outcome }) },
    `model registry reload refused (${code}); the running registry stays${problems.length > 0 ? `:\n  - ${problems.join("\n  - ")}` : ""}`,
  );
}

/**
 * Reloads and logs the outcome; never throws. For SIGHUP (reloads only the signalled process) and
 * for a reload broadcast by another instance: nobody waits for an answer there but the log.
 */
export async function reloadAndLog(
  engine: Pick<InferenceEngine, "reloadRegistry">,
  log: ReloadLog,
  trigger: ReloadTrigger,
): Promise<RegistryChange | undefined> {
  try {
    const change = await engine.reloadRegistry();
    logReload(log, trigger, change);
    return change;
  } catch (e) {
    logReload(log, trigger, e);
    return undefined;
  }
}
