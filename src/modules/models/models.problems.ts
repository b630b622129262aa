import { ERROR_CATALOGUE, type ErrorCode } from "../../platform/errors.ts";
import { PROBLEM_CONTENT_TYPE } from "../../platform/http/problem.ts";

/**
 * The problem+json responses of the `/v1/models` routes for the OpenAPI document (the body is the
 * shared `Problem` schema, docs/errors.md), each with examples of what the route answers.
 */

const REQUEST_ID = "3f1c2a4e-8d7b-4c1e-9a0f-2b6d5e7c8a91";

/** A problem body as the error handler renders it (src/platform/http/problem.ts). */
function example(code: ErrorCode, instance: string, detail: string, extensions: Record<string, unknown> = {}) {
  const { status, title } = ERROR_CATALOGUE[code];
  return {
    type: `http://localhost:8000/problems/${code}`,
    title,
    status,
    detail,
    instance,
    code,
    request_id: REQUEST_ID,
    ...extensions,
  };
}

/**
 * A response declared by media type, so the document says `application/problem+json` (what the
 * error handler sends) and carries named examples (a `$ref` schema's own examples are dropped).
 */
const problem = (description: string, ...examples: ReturnType<typeof example>[]) => ({
  description,
  content: {
    [PROBLEM_CONTENT_TYPE]: {
      schema: { $ref: "Problem#" },
      examples: Object.fromEntries(examples.map((e) => [e.code, { summary: e.title, value: e }])),
    },
  },
});

const unauthorized = (instance: string) =>
  problem(
    "unauthorized (no credentials), invalid_token, invalid_api_key, api_key_revoked or api_key_expired.",
    example("unauthorized", instance, "Authentication is required for this route."),
  );

const forbidden = (instance: string, scope: string, extra: ReturnType<typeof example>[] = []) =>
  problem(
    `forbidden: an API key without the \`${scope}\` scope${extra.length > 0 ? "; enterprise_required: not on the enterprise plan" : ""}.`,
    example("forbidden", instance, `Missing scope: ${scope}.`),
    ...extra,
  );

const unknownModel = (instance: string, id: string) =>
  problem(
    "unknown_model: no model of that id the caller may use (another account's own model, or a service model " +
      "restricted to other customers, answers the same); `available_models` lists those it may.",
    example("unknown_model", instance, `Model "${id}" does not exist; available: mock-openvla-7b, kitting.`, {
      available_models: ["mock-openvla-7b", "kitting"],
    }),
  );

const enterprise = (instance: string) =>
  example("enterprise_required", instance, "Registering your own model endpoints is available on the enterprise plan.");

const invalidDocument = (instance: string) =>
  problem(
    "validation_failed: the document breaks a rule (one `errors` entry per field); endpoint_not_allowed: an " +
      "endpoint URL is refused by the SSRF rules (docs/models.md).",
    example("validation_failed", instance, "The model document failed validation.", {
      errors: [{ in: "body", path: "/backend/timeout_ms", message: "must be at most 60000 for a customer model" }],
    }),
    example(
      "endpoint_not_allowed",
      instance,
      "An endpoint URL is refused: it must be https (http only where the operator allows it), hold no credentials, and resolve to public addresses only (or to a network the operator allow-lists).",
      {
        errors: [
          {
            in: "body",
            path: "/backend/endpoints/0",
            message: "internal.example.com does not resolve to public addresses only",
          },
        ],
      },
    ),
  );

const other = problem(
  "Other request problems: malformed JSON (400 invalid_json), a body too large (413), too many requests (429).",
  example("invalid_json", "/v1/models", "The request body is not valid JSON."),
);

const ID = "my-openvla-finetune";
const ONE = `/v1/models/${ID}`;

/** GET /v1/models. */
export const LIST_PROBLEMS = {
  401: unauthorized("/v1/models"),
  403: forbidden("/v1/models", "inference"),
};

/** GET /v1/models/{model_id}. */
export const DESCRIBE_PROBLEMS = {
  401: unauthorized(ONE),
  403: forbidden(ONE, "inference"),
  404: unknownModel(ONE, ID),
};

/** POST /v1/models. */
export const REGISTER_PROBLEMS = {
  401: unauthorized("/v1/models"),
  403: forbidden("/v1/models", "admin", [enterprise("/v1/models")]),
  409: problem(
    "model_id_taken: one of your models, or a service model you can use, has that id; model_limit_reached: " +
      "your account has BYOM_MAX_MODELS_PER_CUSTOMER models already (`limit`).",
    example("model_id_taken", "/v1/models", `A model with id "${ID}" already exists; choose another id.`),
    example("model_limit_reached", "/v1/models", "Your account may register at most 10 models; delete one first.", {
      limit: 10,
    }),
  ),
  422: invalidDocument("/v1/models"),
  "4XX": other,
};

/** PUT /v1/models/{model_id}. */
export const REPLACE_PROBLEMS = {
  401: unauthorized(ONE),
  403: forbidden(ONE, "admin", [enterprise(ONE)]),
  404: unknownModel(ONE, ID),
  422: invalidDocument(ONE),
  "4XX": other,
};

/** DELETE /v1/models/{model_id}. */
export const DELETE_PROBLEMS = {
  401: unauthorized(ONE),
  403: forbidden(ONE, "admin"),
  404: unknownModel(ONE, ID),
};

/** POST /v1/models/{model_id}/probe. */
export const PROBE_PROBLEMS = {
  401: unauthorized(`${ONE}/probe`),
  403: forbidden(`${ONE}/probe`, "admin"),
  404: unknownModel(`${ONE}/probe`, ID),
  400: problem(
    "invalid_unnorm_key: the model has no statistics of that name (`valid_unnorm_keys` lists them); invalid_json.",
    example("invalid_unnorm_key", `${ONE}/probe`, 'Unknown unnorm_key "fractal"; valid: bridge_orig.', {
      valid_unnorm_keys: ["bridge_orig"],
    }),
  ),
  422: problem(
    "validation_failed: the body breaks its schema.",
    example("validation_failed", `${ONE}/probe`, "The request body failed validation.", {
      errors: [{ in: "body", path: "/instruction", message: "must NOT have fewer than 1 characters" }],
    }),
  ),
  "4XX": other,
};
