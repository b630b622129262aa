import type { FastifyReply, FastifyRequest } from "fastify";
import { type AppError, errors } from "../../platform/errors.ts";
import { toAppError } from "../../platform/http/error-handler.ts";
import type { Platform } from "../../platform/platform.ts";
import { requestTrace } from "../../platform/tracing.ts";
import type { InferenceSource } from "./inference-logs.repo.ts";
import type { CallContext, FailureInfo, InferenceRunner, RunInput } from "./inference-runner.ts";
import { decodeJsonNumpy } from "./json-numpy.ts";

/** Requests whose outcome was already logged (by the runner), so the error path does not log twice. */
const logged = new WeakSet<FastifyRequest>();

export function markLogged(request: FastifyRequest): void {
  logged.add(request);
}

export function callContext(request: FastifyRequest, reply: FastifyReply, source: InferenceSource): CallContext {
  const principal = request.principal;
  if (principal === null) throw errors.unauthorized();
  const trace = requestTrace(request);
  return { principal, source, elapsedMs: () => reply.elapsedTime, ...(trace === undefined ? {} : { trace }) };
}

/** Rejections that are not inferences: authentication, permission and rate limiting. */
export function isRejection(err: AppError): boolean {
  return err.status === 401 || err.status === 403 || err.status === 429;
}

/**
 * Shared by the inference routes' error handlers: maps the error onto the catalogue and logs
 * the failed inference (unless it was a rejection, nobody is authenticated yet, or the runner
 * already logged it), then returns the AppError for the route to render its own way.
 */
export function recordRouteFailure(
  runner: InferenceRunner,
  request: FastifyRequest,
  reply: FastifyReply,
  error: Error,
  source: InferenceSource,
  info: (body: unknown) => FailureInfo,
): AppError {
  const limit = request.routeOptions.bodyLimit ?? 0;
  const appError = toAppError(error, limit);
  if (appError.status >= 500) request.log.error({ err: error, code: appError.code }, "inference failed");
  else request.log.info({ code: appError.code, status: appError.status }, appError.detail ?? appError.title);
  if (request.principal !== null && !isRejection(appError) && !logged.has(request)) {
    logged.add(request);
    let failure: FailureInfo = {};
    try {
      failure = info(request.body);
    } catch {
      // A body we could not even read: log what we know.
    }
    runner.recordFailure(callContext(request, reply, source), failure, appError.code);
  }
  return appError;
}

/** Pulls loggable fields out of any (possibly invalid) body. */
export function failureInfoOf(body: unknown): FailureInfo {
  if (body === null || typeof body !== "object" || Buffer.isBuffer(body)) return {};
  const b = body as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return {
    model: str(b.model),
    unnormKey: str(b.unnorm_key),
    instruction: str(b.instruction),
    robotId: str(b.robot_id),
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * The common case checked without scanning the string with a regular expression (a 50 KB
 * base64 string took about 0.25 ms per regex pass, and the slow path makes up to three):
 * Node's decoder skips anything outside the alphabet, so the input is well-formed exactly
 * when re-encoding the decoded bytes gives it back (standard alphabet, with or without
 * padding, or base64url). Undefined when that does not hold (whitespace, a bad character,
 * non-zero trailing bits): the caller then applies the full rules.
 */
function decodeCanonicalBase64(s: string): Buffer | undefined {
  let end = s.length;
  if (end > 0 && s.charCodeAt(end - 1) === 61) end--; // "="
  if (end > 0 && s.charCodeAt(end - 1) === 61) end--;
  const core = end === s.length ? s : s.slice(0, end);
  const bytes = Buffer.from(core, "base64");
  const std = bytes.toString("base64");
  let stdEnd = std.length;
  while (stdEnd > 0 && std.charCodeAt(stdEnd - 1) === 61) stdEnd--;
  if (stdEnd === core.length && std.startsWith(core)) return bytes;
  if (bytes.toString("base64url") === core) return bytes;
  return undefined;
}

/** A base64 (or base64url) image string, optionally a `data:image/...;base64,` URL, to bytes. */
export function decodeBase64Image(value: string, maxBytes: number): Uint8Array {
  let s = value;
  if (s.startsWith("data:")) {
    const comma = s.indexOf(",");
    if (comma < 0 || !s.slice(0, comma).endsWith(";base64")) {
      throw errors.invalidImage("A data: URL image must be base64 encoded.");
    }
    s = s.slice(comma + 1);
  }
  if (s.length % 4 !== 1 && Math.floor((s.length * 3) / 4) <= maxBytes + 2) {
    const fast = decodeCanonicalBase64(s);
    if (fast !== undefined) return new Uint8Array(fast.buffer, fast.byteOffset, fast.byteLength);
  }
  if (/\s/.test(s)) s = s.replace(/\s+/g, "");
  if (Math.floor((s.length * 3) / 4) > maxBytes + 2) {
    throw errors.invalidImage(`The image is larger than ${maxBytes} bytes.`);
  }
  if (!(BASE64.test(s) || BASE64URL.test(s)) || s.length % 4 === 1) {
    throw errors.invalidImage("The image is not valid base64.");
  }
  const bytes = Buffer.from(s, BASE64.test(s) ? "base64" : "base64url");
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The `image` member of a request: base64 string, json_numpy array document, or uploaded bytes. */
export function imageInput(image: unknown, platform: Platform): RunInput["image"] {
  const limits = platform.config.models;
  if (typeof image === "string") return { imageBytes: decodeBase64Image(image, limits.imageMaxBytes) };
  if (Buffer.isBuffer(image)) return { imageBytes: new Uint8Array(image.buffer, image.byteOffset, image.byteLength) };
  if (image !== null && typeof image === "object") {
    return { imageArray: decodeJsonNumpy(image, { maxBytes: limits.imageMaxPixels * 3, maxDims: 3 }) };
  }
  throw errors.invalidImage("Send the image as base64 JPEG/PNG/WebP, a json_numpy uint8 HxWx3 array or a file part.");
}

/** `Server-Timing` (https://www.w3.org/TR/server-timing/) from a response's timing block. */
export function serverTiming(t: {
  preprocess_ms: number;
  queue_ms: number;
  model_ms: number;
  total_ms: number;
}): string {
  return `preprocess;dur=${t.preprocess_ms}, queue;dur=${t.queue_ms}, model;dur=${t.model_ms}, total;dur=${t.total_ms}`;
}
