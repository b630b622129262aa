/**
 * The closed catalogue of error codes. Every failure the API reports is one of these,
 * rendered as RFC 9457 problem+json by the single error handler (http/error-handler.ts).
 * docs/errors.md lists the same codes; a test keeps the two in step.
 */
export const ERROR_CATALOGUE = {
  // 4xx: the request
  bad_request: { status: 400, title: "Bad request" },
  invalid_json: { status: 400, title: "Malformed JSON body" },
  invalid_request: { status: 400, title: "Invalid request parameters" },
  invalid_character: { status: 400, title: "Text holds a character that cannot be stored" },
  validation_failed: { status: 422, title: "Request body failed validation" },
  unauthorized: { status: 401, title: "Authentication required" },
  invalid_token: { status: 401, title: "Invalid or expired token" },
  invalid_credentials: { status: 401, title: "Invalid credentials" },
  invalid_refresh_token: { status: 401, title: "Invalid refresh token" },
  invalid_email_token: { status: 400, title: "Invalid or expired link" },
  malformed_api_key: { status: 401, title: "Malformed API key" },
  invalid_api_key: { status: 401, title: "Unknown API key" },
  api_key_revoked: { status: 401, title: "API key revoked" },
  api_key_expired: { status: 401, title: "API key expired" },
  forbidden: { status: 403, title: "Not allowed" },
  robot_mismatch: { status: 403, title: "API key is bound to another robot" },
  customer_suspended: { status: 403, title: "Customer account suspended" },
  not_found: { status: 404, title: "Resource not found" },
  route_not_found: { status: 404, title: "No such route" },
  method_not_allowed: { status: 405, title: "Method not allowed" },
  conflict: { status: 409, title: "Conflict" },
  email_taken: { status: 409, title: "Email already registered" },
  already_suspended: { status: 409, title: "Customer already suspended" },
  not_suspended: { status: 409, title: "Customer is not suspended" },
  last_superuser: { status: 409, title: "Last superuser" },
  payload_too_large: { status: 413, title: "Request body too large" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  rate_limited: { status: 429, title: "Too many requests" },
  invalid_image: { status: 422, title: "Image could not be used" },
  invalid_array: { status: 422, title: "Array payload is malformed" },
  unknown_model: { status: 404, title: "No such model" },
  enterprise_required: { status: 403, title: "Enterprise plan required" },
  endpoint_not_allowed: { status: 422, title: "Model endpoint not allowed" },
  model_id_taken: { status: 409, title: "Model id already in use" },
  model_limit_reached: { status: 409, title: "Too many registered models" },
  invalid_unnorm_key: { status: 400, title: "Missing or unknown unnorm_key" },
  invalid_safety_profile: { status: 422, title: "Invalid safety profile" },
  robot_stopped: { status: 409, title: "Robot is emergency-stopped" },
  upgrade_required: { status: 426, title: "WebSocket upgrade required" },
  too_many_sessions: { status: 429, title: "Too many stream sessions" },
  subscription_exists: { status: 409, title: "Customer already has a subscription" },
  invalid_signature: { status: 400, title: "Invalid webhook signature" },
  redirect_not_allowed: { status: 400, title: "Redirect URL not allowed" },
  overage_not_available: { status: 409, title: "Metered overage not available" },
  idempotency_key_reused: { status: 422, title: "Idempotency key used for another request" },
  inference_without_action: { status: 409, title: "Inference returned no action" },
  experiment_running: { status: 409, title: "An experiment of this mode is already running" },
  export_in_progress: { status: 409, title: "An account export is already queued or running" },
  export_not_ready: { status: 409, title: "Account export not finished" },
  export_expired: { status: 410, title: "Account export expired" },
  invalid_registry: { status: 422, title: "Model registry file is invalid" },
  quota_exceeded: {
    status: 429,
    title: "Quota exceeded",
    // The problem type registered by draft-ietf-httpapi-ratelimit-headers, so generic clients recognise it.
    type: "https://iana.org/assignments/http-problem-types#quota-exceeded",
  },
  // 5xx: the service
  internal_error: { status: 500, title: "Internal server error" },
  database_unavailable: { status: 503, title: "Database unavailable" },
  service_overloaded: { status: 503, title: "Service overloaded" },
  shutting_down: { status: 503, title: "Server is shutting down" },
  request_timeout: { status: 503, title: "Request timed out" },
  invalid_model_output: { status: 502, title: "Model returned an invalid output" },
  model_overloaded: { status: 503, title: "Model queue is full" },
  model_unavailable: { status: 503, title: "Model is unavailable" },
  inference_timeout: { status: 504, title: "Inference timed out" },
  model_warm_up_failed: { status: 502, title: "A new model failed to warm up" },
  billing_disabled: { status: 503, title: "Billing is not configured" },
  billing_unavailable: { status: 503, title: "Billing provider unavailable" },
} as const satisfies Record<string, { status: number; title: string; type?: string }>;

/** The problem `type` URI of a code when it is a registered one rather than our `/problems/{code}`. */
export function registeredProblemType(code: ErrorCode): string | undefined {
  const entry: { readonly title: string; readonly type?: string } = ERROR_CATALOGUE[code];
  return entry.type;
}

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** One field-level problem; `path` is a JSON Pointer into the request part named by `in`. */
export interface FieldError {
  readonly in: "body" | "query" | "params" | "headers";
  readonly path: string;
  readonly message: string;
}

export interface AppErrorOptions {
  readonly detail?: string;
  readonly errors?: readonly FieldError[];
  readonly headers?: Readonly<Record<string, string>>;
  /** Extra problem members (RFC 9457 extensions), e.g. `violated-policies`. */
  readonly extensions?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/** An expected failure with a catalogue code; the error handler renders it as problem+json. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly detail: string | undefined;
  readonly errors: readonly FieldError[] | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly extensions: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    const entry = ERROR_CATALOGUE[code];
    super(options.detail ?? entry.title, { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.status = entry.status;
    this.title = entry.title;
    this.detail = options.detail;
    this.errors = options.errors;
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

const PART_NAMES: Record<FieldError["in"], string> = {
  body: "body field",
  query: "query parameter",
  params: "path parameter",
  headers: "header",
};

/** Factories, so call sites read as sentences and never invent codes. */
export const errors = {
  badRequest: (detail: string) => new AppError("bad_request", { detail }),
  invalidJson: (detail = "The request body is not valid JSON.") => new AppError("invalid_json", { detail }),
  invalidRequest: (fieldErrors: readonly FieldError[], detail = "Request parameters are invalid.") =>
    new AppError("invalid_request", { detail, errors: fieldErrors }),
  /** U+0000 in a field: PostgreSQL text cannot hold it, so it is refused before anything stores it. */
  invalidCharacter: (part: FieldError["in"], path: string) =>
    new AppError("invalid_character", {
      detail: `The ${PART_NAMES[part]} ${path} holds the character U+0000 (NUL), which cannot be stored; remove it.`,
      errors: [{ in: part, path, message: "must not contain the character U+0000 (NUL)" }],
    }),
  validation: (fieldErrors: readonly FieldError[], detail = "The request body failed validation.") =>
    new AppError("validation_failed", { detail, errors: fieldErrors }),
  unauthorized: (detail = "Authentication is required for this route.") =>
    new AppError("unauthorized", { detail, headers: { "WWW-Authenticate": 'Bearer realm="vla"' } }),
  invalidToken: (detail = "The access token is invalid or has expired.") =>
    new AppError("invalid_token", {
      detail,
      headers: { "WWW-Authenticate": 'Bearer realm="vla", error="invalid_token"' },
    }),
  invalidCredentials: (detail = "Email or password is incorrect.") => new AppError("invalid_credentials", { detail }),
  invalidRefreshToken: (detail = "The refresh token is invalid, expired, revoked or already used; sign in again.") =>
    new AppError("invalid_refresh_token", { detail }),
  invalidEmailToken: (detail = "This link is invalid, already used or expired; request a new one.") =>
    new AppError("invalid_email_token", { detail }),
  emailTaken: (
    detail = "An account with this email already exists. Sign in, or reset the password if you forgot it.",
  ) => new AppError("email_taken", { detail }),
  forbidden: (detail = "You are not allowed to do this.") => new AppError("forbidden", { detail }),
  robotMismatch: (asked: string, bound: string) =>
    new AppError("robot_mismatch", {
      detail: `This API key is bound to robot "${bound}"; it cannot act for robot "${asked}". Omit the robot id, or use that robot's key.`,
      extensions: { robot_id: asked, key_robot_id: bound },
    }),
  customerSuspended: (reason: string, suspendedAt: string) =>
    new AppError("customer_suspended", {
      detail: `This customer account was suspended by the service operator at ${suspendedAt}: ${reason}. Its API keys and sessions do not work until it is reinstated; contact support.`,
      extensions: { suspended_at: suspendedAt, suspended_reason: reason },
    }),
  alreadySuspended: (suspendedAt: string) =>
    new AppError("already_suspended", {
      detail: `The customer has been suspended since ${suspendedAt}; unsuspend it first to record a new reason.`,
      extensions: { suspended_at: suspendedAt },
    }),
  notSuspended: () => new AppError("not_suspended", { detail: "The customer is not suspended; nothing to undo." }),
  lastSuperuser: () =>
    new AppError("last_superuser", {
      detail: "This is the last active superuser; grant another user first, then revoke this one.",
    }),
  notFound: (what = "Resource") => new AppError("not_found", { detail: `${what} not found.` }),
  routeNotFound: (method: string, url: string) =>
    new AppError("route_not_found", { detail: `No route ${method} ${url}.` }),
  methodNotAllowed: (method: string, allowed: readonly string[]) =>
    new AppError("method_not_allowed", {
      detail: `Method ${method} is not allowed here; use ${allowed.join(", ")}.`,
      headers: { Allow: allowed.join(", ") },
    }),
  conflict: (detail: string) => new AppError("conflict", { detail }),
  payloadTooLarge: (limitBytes: number) =>
    new AppError("payload_too_large", { detail: `The request body exceeds the limit of ${limitBytes} bytes.` }),
  /** A limit smaller than the body limit was hit (a multipart part, the number of parts); name it. */
  partTooLarge: (detail: string) => new AppError("payload_too_large", { detail }),
  unsupportedMediaType: (contentType: string | undefined, accepted: readonly string[]) =>
    new AppError("unsupported_media_type", {
      detail: `Content-Type ${contentType ?? "(none)"} is not supported here; send ${accepted.join(" or ")}.`,
    }),
  malformedApiKey: () =>
    new AppError("malformed_api_key", {
      detail: "The API key is not of the form vla_live_<base58>; check that it was copied whole.",
      headers: { "WWW-Authenticate": 'Bearer realm="vla", error="invalid_token"' },
    }),
  invalidApiKey: () =>
    new AppError("invalid_api_key", {
      detail: "No such API key.",
      headers: { "WWW-Authenticate": 'Bearer realm="vla", error="invalid_token"' },
    }),
  apiKeyRevoked: () =>
    new AppError("api_key_revoked", {
      detail: "This API key was revoked (or its rotation grace period ended).",
      headers: { "WWW-Authenticate": 'Bearer realm="vla", error="invalid_token"' },
    }),
  apiKeyExpired: () =>
    new AppError("api_key_expired", {
      detail: "This API key has expired.",
      headers: { "WWW-Authenticate": 'Bearer realm="vla", error="invalid_token"' },
    }),
  quotaExceeded: (
    retryAfterSeconds: number,
    violatedPolicies: readonly string[],
    headers: Readonly<Record<string, string>> = {},
  ) =>
    new AppError("quota_exceeded", {
      detail: `Quota exceeded for policy ${violatedPolicies.map((p) => `"${p}"`).join(", ")}; retry after ${Math.max(1, Math.ceil(retryAfterSeconds))} s.`,
      headers: { ...headers, "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))) },
      extensions: { "violated-policies": violatedPolicies },
    }),
  rateLimited: (retryAfterSeconds: number, detail = "Too many requests; slow down.") =>
    new AppError("rate_limited", {
      detail,
      headers: { "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    }),
  internal: (cause?: unknown) => new AppError("internal_error", { detail: "An unexpected error occurred.", cause }),
  databaseUnavailable: (cause?: unknown) =>
    new AppError("database_unavailable", {
      detail: "The database is not reachable; try again shortly.",
      headers: { "Retry-After": "5" },
      cause,
    }),
  overloaded: (retryAfterSeconds = 1) =>
    new AppError("service_overloaded", {
      detail: "The server is overloaded; retry after the indicated delay.",
      headers: { "Retry-After": String(retryAfterSeconds) },
    }),
  invalidImage: (detail: string) => new AppError("invalid_image", { detail }),
  invalidArray: (detail: string) => new AppError("invalid_array", { detail }),
  unknownModel: (modelId: string, known: readonly string[]) =>
    new AppError("unknown_model", {
      detail: `Model "${modelId}" does not exist; available: ${known.join(", ")}.`,
      extensions: { available_models: known },
    }),
  enterpriseRequired: (what: string) =>
    new AppError("enterprise_required", { detail: `${what} is available on the enterprise plan.` }),
  endpointNotAllowed: (fieldErrors: readonly FieldError[]) =>
    new AppError("endpoint_not_allowed", {
      detail:
        "An endpoint URL is refused: it must be https (http only where the operator allows it), hold no credentials, and resolve to public addresses only (or to a network the operator allow-lists).",
      errors: fieldErrors,
    }),
  modelIdTaken: (id: string) =>
    new AppError("model_id_taken", { detail: `A model with id "${id}" already exists; choose another id.` }),
  modelLimitReached: (limit: number) =>
    new AppError("model_limit_reached", {
      detail: `Your account may register at most ${limit} models; delete one first.`,
      extensions: { limit },
    }),
  invalidUnnormKey: (detail: string, validKeys: readonly string[]) =>
    new AppError("invalid_unnorm_key", { detail, extensions: { valid_unnorm_keys: validKeys } }),
  invalidSafetyProfile: (fieldErrors: readonly FieldError[], detail = "The safety profile is invalid.") =>
    new AppError("invalid_safety_profile", { detail, errors: fieldErrors }),
  robotStopped: (robotId: string, stoppedAt: string, reason: string) =>
    new AppError("robot_stopped", {
      detail: `Robot "${robotId}" was emergency-stopped at ${stoppedAt} (${reason}); its owner must clear the stop with POST /v1/robots/{robot_id}/clear-stop.`,
      extensions: { robot_id: robotId, stopped_at: stoppedAt, stop_reason: reason },
    }),
  upgradeRequired: (path: string) =>
    new AppError("upgrade_required", {
      detail: `${path} is a WebSocket endpoint; connect with a WebSocket client (Upgrade: websocket).`,
      headers: { Upgrade: "websocket", Connection: "Upgrade" },
    }),
  tooManySessions: (limit: number) =>
    new AppError("too_many_sessions", {
      detail: `Your plan allows ${limit} concurrent stream session${limit === 1 ? "" : "s"}; close one first.`,
      extensions: { max_sessions: limit },
    }),
  invalidModelOutput: (detail: string, cause?: unknown) => new AppError("invalid_model_output", { detail, cause }),
  modelOverloaded: (modelId: string, retryAfterSeconds = 1) =>
    new AppError("model_overloaded", {
      detail: `The queue of model "${modelId}" is full; retry after the indicated delay.`,
      headers: { "Retry-After": String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    }),
  modelUnavailable: (modelId: string, reason: string, cause?: unknown) =>
    new AppError("model_unavailable", {
      detail: `Model "${modelId}" is unavailable: ${reason}`,
      headers: { "Retry-After": "5" },
      cause,
    }),
  inferenceTimeout: (modelId: string, timeoutMs: number) =>
    new AppError("inference_timeout", { detail: `Model "${modelId}" did not answer within ${timeoutMs} ms.` }),
  subscriptionExists: (status: string) =>
    new AppError("subscription_exists", {
      detail: `The customer already has a ${status} subscription; change or cancel it in the billing portal (GET /v1/billing/portal).`,
    }),
  invalidSignature: (detail = "The Stripe-Signature header is missing, malformed, stale or does not match the body.") =>
    new AppError("invalid_signature", { detail }),
  redirectNotAllowed: (field: string, allowed: readonly string[]) =>
    new AppError("redirect_not_allowed", {
      detail: `${field} must be an http(s) URL on one of these origins: ${allowed.join(", ")}.`,
      errors: [{ in: "body", path: `/${field}`, message: "origin not allowed" }],
    }),
  overageNotAvailable: (detail: string) => new AppError("overage_not_available", { detail }),
  idempotencyKeyReused: () =>
    new AppError("idempotency_key_reused", {
      detail:
        "This Idempotency-Key was already used for a different request (another route or body); use a new key for a new request.",
      errors: [{ in: "headers", path: "/idempotency-key", message: "already used for a different request" }],
    }),
  inferenceWithoutAction: (inferenceId: string, detail: string) =>
    new AppError("inference_without_action", { detail, extensions: { inference_id: inferenceId } }),
  experimentRunning: (mode: string) =>
    new AppError("experiment_running", {
      detail: `A ${mode} experiment is already scheduled or running; stop it first (POST /v1/experiments/{id}/stop).`,
    }),
  exportInProgress: (exportId: string | undefined) =>
    new AppError("export_in_progress", {
      detail:
        "This account already has an export queued or running; follow it at GET /v1/account/export/{id} and request another once it has finished.",
      ...(exportId === undefined
        ? {}
        : { extensions: { export_id: exportId }, headers: { Location: `/v1/account/export/${exportId}` } }),
    }),
  exportNotReady: (status: string) =>
    new AppError("export_not_ready", {
      detail:
        status === "failed"
          ? "This export failed; there is nothing to download. Request a new export."
          : `This export is ${status}; download it once its status is done.`,
      extensions: { status },
    }),
  exportExpired: () =>
    new AppError("export_expired", {
      detail: "This export's download window has passed and its archive was deleted; request a new export.",
    }),
  billingDisabled: () =>
    new AppError("billing_disabled", {
      detail: "Billing is not configured on this server (no STRIPE_SECRET_KEY); tiers are changed by administrators.",
    }),
  billingUnavailable: (cause?: unknown) =>
    new AppError("billing_unavailable", {
      detail: "The billing provider could not be reached; nothing was changed. Retry shortly.",
      headers: { "Retry-After": "5" },
      cause,
    }),
  invalidRegistry: (problems: readonly string[]) =>
    new AppError("invalid_registry", {
      detail: `The model registry was not reloaded: ${problems.length} problem${problems.length === 1 ? "" : "s"}; the running registry stays.`,
      extensions: { problems },
    }),
  modelWarmUpFailed: (problems: readonly string[]) =>
    new AppError("model_warm_up_failed", {
      detail: `The model registry was not reloaded: a new or changed model did not warm up; the running registry stays.`,
      extensions: { problems },
    }),
  shuttingDown: () =>
    new AppError("shutting_down", {
      detail: "The server is shutting down; retry on another instance.",
      headers: { "Retry-After": "1", Connection: "close" },
    }),
} as const;
