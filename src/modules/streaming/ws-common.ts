import type { IncomingMessage } from "node:http";
import type { FastifyRequest } from "fastify";
import { type Credential, extractCredential, type Principal } from "../../platform/auth.ts";
import { AppError, errors, isAppError } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import type { InferenceRunner } from "../inference/inference-runner.ts";
import type { ConnectionRegistry, StreamMetrics } from "./connections.ts";

/** What both stream endpoints are built from. */
export interface StreamDeps {
  readonly platform: Platform;
  readonly runner: InferenceRunner;
  readonly registry: ConnectionRegistry;
  readonly metrics: StreamMetrics;
  /** Extra headers of an upgrade's 101 answer (the stream-time RateLimit fields), set by its preHandler. */
  readonly upgradeHeaders: WeakMap<IncomingMessage, Readonly<Record<string, string>>>;
  /** The upgrade headers' credential, verified once by the /v1/stream preHandler (so a bad key counts once). */
  readonly verified: WeakMap<FastifyRequest, Promise<Principal>>;
}

/**
 * The credential of an upgrade request's headers (Bearer, X-API-Key, Api-Key): undefined when
 * there is none, an AppError when the header is malformed.
 */
export function upgradeCredential(request: FastifyRequest): Credential | AppError | undefined {
  try {
    return extractCredential(request.headers);
  } catch (e) {
    return isAppError(e) ? e : errors.unauthorized();
  }
}

/** Verifies a credential and checks the `inference` scope; failures are AppErrors (401/403/429). */
export async function verifyPrincipal(
  platform: Platform,
  credential: Credential,
  request: FastifyRequest,
): Promise<Principal> {
  const principal = await platform.auth.verify(credential, request);
  if (!principal.scopes.includes("inference")) throw errors.forbidden("Missing scope: inference.");
  return principal;
}

/** `code: detail` for close reasons and openpi's text error frames; never internals. */
export function describeError(e: unknown): { code: string; message: string } {
  if (e instanceof AppError) {
    const message = e.status >= 500 && e.code === "internal_error" ? e.title : (e.detail ?? e.title);
    return { code: e.code, message };
  }
  return { code: "internal_error", message: "An unexpected error occurred." };
}
