import { hash } from "node:crypto";
import type { ExperimentVariant } from "../../platform/db/schema/index.ts";

/**
 * A robot's position in [0, 1) for one experiment: the first 48 bits of SHA-256(experiment id,
 * NUL, robot id). The same on every instance, with no shared state; another experiment reshuffles
 * the robots (its id is in the hash), so one robot is not always in the first variant.
 */
export function unitHash(experimentId: string, robotId: string): number {
  const hex = hash("sha256", `${experimentId}\u0000${robotId}`, "hex");
  return Number.parseInt(hex.slice(0, 12), 16) / 2 ** 48;
}

/** The variant whose cumulative-weight interval holds `u` (in [0, 1)). */
export function pickVariant(variants: readonly ExperimentVariant[], u: number): ExperimentVariant {
  let total = 0;
  for (const v of variants) total += v.weight;
  let edge = 0;
  for (const v of variants) {
    edge += v.weight / total;
    if (u < edge) return v;
  }
  // Rounding can leave the last edge a hair below 1.
  return variants[variants.length - 1] as ExperimentVariant;
}

/**
 * Assignment `robot_id`: by the hash of (experiment, robot), sticky; a request without a robot id
 * falls back to a per-request draw. Assignment `request`: a draw per request.
 */
export function assign(
  experimentId: string,
  assignment: "robot_id" | "request",
  variants: readonly ExperimentVariant[],
  robotId: string | undefined,
  random: () => number = Math.random,
): ExperimentVariant {
  const u = assignment === "robot_id" && robotId !== undefined ? unitHash(experimentId, robotId) : random();
  return pickVariant(variants, u);
}
