import type { Socket } from "node:net";
import type { FastifyRequest } from "fastify";
import type { Principal } from "../../platform/auth.ts";
import { type AppError, errors, isAppError } from "../../platform/errors.ts";
import { experimentServices } from "../experiments/experiments.module.ts";
import type { ModelInfo } from "../inference/inference.service.ts";
import type { ExperimentAssignment } from "../inference/inference-runner.ts";
import { withKeyDefaults } from "../inference/key-defaults.ts";
import { type StreamTimeResult, streamExhausted, streamTimeError } from "../rate-limit/stream-time.ts";
import { resolveUnnormKey } from "./stream-connection.ts";
import { type StreamDeps, upgradeCredential, verifyPrincipal } from "./ws-common.ts";

/** Query parameters of the openpi upgrade (validated by the route schema). */
export interface OpenpiQuery {
  readonly model?: string | undefined;
  readonly unnorm_key?: string | undefined;
  readonly robot_id?: string | undefined;
}

/**
 * Where the session's unnorm_key came from: the query, the API key's default, or the model (its
 * declared default or its only key).
 */
export type UnnormKeySource = "query" | "api_key" | "model_default";

/** What the upgrade request settled before the WebSocket opened. */
export interface OpenpiAdmission {
  readonly principal: Principal;
  readonly model: ModelInfo;
  /** The split experiment that chose the session's model (docs/experiments.md). */
  readonly experiment: ExperimentAssignment | undefined;
  readonly unnormKey: string;
  readonly unnormKeySource: UnnormKeySource;
  /** The query's robot_id, else the API key's robot (undefined: none). */
  readonly robotId: string | undefined;
  /** The customer's session slot; released once, whichever way the socket ends. */
  readonly slot: SlotLease;
  /** The customer's stream time when admitted (time was left). */
  readonly streamTime: StreamTimeResult;
}

/** A held session slot; `release()` is idempotent. */
export class SlotLease {
  private released = false;
  private readonly free: () => void;
  constructor(free: () => void) {
    this.free = free;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.free();
  }
}

/**
 * Everything that can refuse an openpi connection, done on the upgrade request so the refusal is
 * an HTTP status with a problem+json body: the stock client (Python `websockets`) then raises an
 * error naming the status. Refused after the upgrade, the text frame would meet a client that
 * expects the binary metadata frame and dies with `TypeError: a bytes-like object is required`.
 * Order: credential (401), scope (403), robot not the key's (403 robot_mismatch), stream time
 * (429 quota_exceeded), model (404) and unnorm_key (400), session slot (429). The API key's
 * defaults fill what the query leaves out.
 */
export async function admitOpenpi(
  deps: StreamDeps,
  request: FastifyRequest,
  query: OpenpiQuery,
): Promise<OpenpiAdmission> {
  const { platform, registry, metrics } = deps;
  /** Counts the refusal; the caller throws what it returns. */
  const refusal = (reason: string, e: AppError): AppError => {
    metrics.rejected.inc({ endpoint: "openpi", reason });
    return e;
  };
  if (platform.lifecycle.isShuttingDown) throw refusal("shutting_down", errors.shuttingDown());
  const credential = upgradeCredential(request);
  if (credential === undefined) {
    throw refusal("auth", errors.unauthorized("Send the API key as `Authorization: Api-Key <key>`."));
  }
  if (isAppError(credential)) throw refusal("auth", credential);
  let principal: Principal;
  try {
    principal = await verifyPrincipal(platform, credential, request);
  } catch (e) {
    throw isAppError(e) ? refusal("auth", e) : e;
  }
  let target: ReturnType<typeof withKeyDefaults>;
  try {
    target = withKeyDefaults(
      principal,
      { robotId: query.robot_id, model: query.model, unnormKey: query.unnorm_key },
      platform.engine.defaultModel,
    );
  } catch (e) {
    throw isAppError(e) ? refusal("robot_mismatch", e) : e;
  }
  // Neither the query nor the key names a model: a running split experiment picks it for the session.
  let experiment: ExperimentAssignment | undefined;
  if (target.model === undefined) {
    experiment = await experimentServices.get(platform)?.assignment(principal, target.robotId);
    if (experiment !== undefined) {
      target = withKeyDefaults(
        principal,
        { robotId: query.robot_id, model: experiment.model, unnormKey: query.unnorm_key },
        platform.engine.defaultModel,
      );
    }
  }
  const streamTime = await platform.limits.streamTime.peek(principal.customerId);
  if (streamExhausted(streamTime).length > 0) throw refusal("stream_time", streamTimeError(streamTime));
  let model: ModelInfo;
  let unnormKey: string;
  try {
    model = platform.engine.describe(target.model ?? platform.engine.defaultModel, principal);
    unnormKey = resolveUnnormKey(target.unnormKey, model.unnorm_keys, model.default_unnorm_key);
  } catch (e) {
    throw isAppError(e) ? refusal("model", e) : e;
  }
  const slot = await registry.acquire(principal.customerId, principal.tier);
  if (slot === undefined) {
    throw refusal("too_many_sessions", errors.tooManySessions(registry.limitFor(principal.tier)));
  }
  const lease = new SlotLease(() => registry.release(principal.customerId, slot));
  // Released when the socket ends, whether or not the upgrade completed (the client may leave
  // before it, or the handshake may fail); the connection releases it earlier on its close.
  // (app.injectWS builds a request without a socket: then only the connection releases it.)
  const socket = request.raw.socket as Socket | undefined;
  socket?.once("close", () => lease.release());
  if (socket?.destroyed === true) lease.release();
  return {
    principal,
    model,
    unnormKey,
    unnormKeySource:
      query.unnorm_key !== undefined ? "query" : target.unnormKey !== undefined ? "api_key" : "model_default",
    robotId: target.robotId,
    experiment,
    slot: lease,
    streamTime,
  };
}
