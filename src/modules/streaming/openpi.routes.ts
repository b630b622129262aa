import type { FastifyInstance, FastifyRequest } from "fastify";
import { Type } from "typebox";
import type { WebSocket } from "ws";
import { errors } from "../../platform/errors.ts";
import { streamHeaders } from "../rate-limit/stream-time.ts";
import { admitOpenpi, type OpenpiAdmission, type OpenpiQuery } from "./openpi-admission.ts";
import { OpenpiConnection } from "./openpi-connection.ts";
import { CLOSE } from "./protocol.ts";
import { invalidCharacter, nulProblems } from "./text-guard.ts";
import type { StreamDeps } from "./ws-common.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

export const OpenpiQuerySchema = Type.Object(
  {
    model: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "Model id; the default model when omitted." }),
    ),
    unnorm_key: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: "Dataset-statistics key; the model's default when omitted.",
      }),
    ),
    robot_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        pattern: "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$",
        description: "Your robot's id, for logs, history and the safety gate's per-robot state.",
      }),
    ),
  },
  { additionalProperties: false },
);

const PROTOCOL =
  "openpi's policy-server protocol, so the stock `openpi-client` works with `Authorization: Api-Key <key>`: " +
  "a msgpack metadata frame on connect (model, action_dim, action_horizon, unnorm_key and where it came from), " +
  "then one msgpack observation -> one msgpack `{actions (H, D) float32, policy_timing, server_timing, safety, " +
  "inference_id}`; numpy markers as msgpack bin keys. The key, its `inference` scope, the model, the unnorm_key " +
  "and a session slot are checked on the upgrade request: a refusal is an HTTP status with a problem+json body " +
  "(the stock client raises an error naming the status). Errors after the upgrade: a text frame `code: detail`, " +
  "then close 1011. No observation for OPENPI_IDLE_TIMEOUT_MS (default 5 min, 0 = never; metadata `idle_timeout_ms`): close 1000 " +
  "`idle_timeout`, freeing the session slot. Logged with source `openpi` and safety-checked; metered in stream time (robot-seconds, " +
  "not per observation): a customer without time left is refused with 429 `quota_exceeded` + `Retry-After`, " +
  "a session that uses it up gets the text frame `quota_exceeded: ...` and close 4429.";

const UPGRADE_RESPONSES = {
  101: { type: "null", description: "Switching Protocols: the WebSocket session begins." },
  400: {
    $ref: "Problem#",
    description:
      "invalid_request: a query parameter fails validation; invalid_unnorm_key: an unknown unnorm_key, " +
      "or none for a model with several and no default (`valid_unnorm_keys` lists them); invalid_character: " +
      "a query parameter holds U+0000 (NUL).",
  },
  401: { $ref: "Problem#", description: "No API key, or an unknown, revoked, expired or malformed one." },
  403: { $ref: "Problem#", description: "The key lacks the `inference` scope." },
  429: {
    $ref: "Problem#",
    description:
      "too_many_sessions: the customer holds all its session slots; quota_exceeded: its stream time " +
      "(`stream_day` or `stream_month`) is used up, with `Retry-After`; or too many failed keys.",
  },
} as const;

/**
 * U+0000 in any parameter is named as such (400 invalid_character) rather than as a pattern mismatch;
 * the app-wide %00 guard (edge-guards.ts) normally answers first.
 */
function refuseNul(request: FastifyRequest): void {
  const nul = nulProblems(request.query);
  if (nul.length > 0) throw invalidCharacter(nul, "The query string", "query");
}

/**
 * `WS /v1/openpi`, the same at `/` (openpi clients built with host + port connect to the root),
 * `GET /healthz` and `GET /v1/openpi/healthz`. Each upgrade is admitted in a preHandler
 * (openpi-admission.ts), so refusals are HTTP answers; the wsHandler then runs the session.
 */
export function registerOpenpiRoutes(app: FastifyInstance, deps: StreamDeps): void {
  // The upgrade's admission (key, model, slot), from its preHandler to its wsHandler.
  const admissions = new WeakMap<FastifyRequest, OpenpiAdmission>();
  const admit = async (request: FastifyRequest) => {
    const admission = await admitOpenpi(deps, request, request.query as OpenpiQuery);
    admissions.set(request, admission);
    deps.upgradeHeaders.set(request.raw, streamHeaders(admission.streamTime));
  };
  const open = (socket: WebSocket, request: FastifyRequest) => {
    const admission = admissions.get(request);
    // Cannot happen (the preHandler admits every upgrade that reaches here); never leave it open.
    if (admission === undefined) socket.close(CLOSE.internalError, "internal_error");
    else new OpenpiConnection(socket, request, deps, admission).open();
  };

  app.route({
    method: "GET",
    url: "/v1/openpi",
    schema: {
      tags: ["streaming"],
      summary: "openpi-compatible policy server (WebSocket)",
      description: `WebSocket upgrade speaking ${PROTOCOL} A plain GET answers 426.`,
      security: SECURITY,
      querystring: OpenpiQuerySchema,
      response: {
        ...UPGRADE_RESPONSES,
        404: { $ref: "Problem#", description: "unknown_model: no such model (`GET /v1/models` lists them)." },
        426: { $ref: "Problem#", description: "Not a WebSocket upgrade." },
      },
    },
    preValidation: async (request) => refuseNul(request),
    preHandler: async (request) => {
      if (request.ws) await admit(request);
    },
    handler: () => {
      throw errors.upgradeRequired("/v1/openpi");
    },
    wsHandler: open,
  });

  app.route({
    method: "GET",
    url: "/",
    schema: {
      tags: ["streaming"],
      summary: "openpi-compatible policy server at the root (WebSocket)",
      description:
        "What `WebsocketClientPolicy(host, port)` connects to: `ws://host:port` has the path `/`. The same " +
        `WebSocket upgrade as \`/v1/openpi\`, with the same query parameters (model, unnorm_key, robot_id): ${PROTOCOL} ` +
        "A plain GET of `/` is not an API route: 404 `route_not_found`.",
      security: SECURITY,
      response: {
        ...UPGRADE_RESPONSES,
        404: {
          $ref: "Problem#",
          description: "route_not_found: a plain GET (no upgrade); unknown_model: an upgrade naming no such model.",
        },
      },
    },
    // No querystring schema: a plain GET keeps its 404 whatever its query. An upgrade's query is
    // checked here like the schema of /v1/openpi would (same validator, same 400 invalid_request).
    preValidation: async (request) => {
      if (request.ws) refuseNul(request);
    },
    preHandler: async (request) => {
      if (!request.ws) return;
      const validate = request.compileValidationSchema(OpenpiQuerySchema, "querystring");
      if (!validate(request.query)) {
        throw Object.assign(new Error("querystring is invalid"), {
          statusCode: 400,
          validation: validate.errors ?? [],
          validationContext: "querystring",
        });
      }
      await admit(request);
    },
    handler: (request) => {
      throw errors.routeNotFound(request.method, "/");
    },
    wsHandler: open,
  });

  const healthz = (url: string, summary: string) =>
    app.get(
      url,
      {
        schema: {
          tags: ["streaming"],
          summary,
          description: "Answers `OK` like openpi's `GET /healthz`; no authentication. Full health: GET /health.",
          response: { 200: Type.String({ description: "`OK` and a newline.", examples: ["OK\n"] }) },
        },
      },
      async (_request, reply) => {
        reply.type("text/plain; charset=utf-8");
        return "OK\n";
      },
    );
  healthz("/healthz", "openpi health check (as openpi's server)");
  healthz("/v1/openpi/healthz", "openpi health check");
}
