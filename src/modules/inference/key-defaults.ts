import type { Principal } from "../../platform/auth.ts";
import { errors } from "../../platform/errors.ts";

/** What a request named itself (undefined: not named). */
export interface AskedTarget {
  readonly robotId?: string | undefined;
  readonly model?: string | undefined;
  readonly unnormKey?: string | undefined;
}

export interface ResolvedTarget {
  readonly robotId: string | undefined;
  /** undefined: the engine's default model. */
  readonly model: string | undefined;
  readonly unnormKey: string | undefined;
}

/**
 * Fills in what the request left out from its API key's defaults (docs/api-keys.md, "Keys bound
 * to a robot"). The key's robot binds: naming another robot is 403 `robot_mismatch`. A model
 * or unnorm_key named in the request wins over the key's; the key's unnorm_key belongs to the
 * key's model (the default model when the key names none), so it is not applied when the
 * request picks another model. Sessions (JWT) have no defaults: the request passes unchanged.
 */
export function withKeyDefaults(principal: Principal, asked: AskedTarget, defaultModel: string): ResolvedTarget {
  const d = principal.keyDefaults;
  if (d === undefined) return { robotId: asked.robotId, model: asked.model, unnormKey: asked.unnormKey };
  if (d.robotId !== null && asked.robotId !== undefined && asked.robotId !== d.robotId) {
    throw errors.robotMismatch(asked.robotId, d.robotId);
  }
  const keyModel = d.model ?? defaultModel;
  const model = asked.model ?? d.model ?? undefined;
  const sameModel = (model ?? defaultModel) === keyModel;
  return {
    robotId: asked.robotId ?? d.robotId ?? undefined,
    model,
    unnormKey: asked.unnormKey ?? (sameModel ? (d.unnormKey ?? undefined) : undefined),
  };
}
