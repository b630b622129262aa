import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../index.ts";
import { inferenceRunners } from "../inference/inference.module.ts";
import { ConnectionRegistry, createStreamMetrics } from "./connections.ts";
import { admitOpenpi, type OpenpiAdmission, type OpenpiQuery } from "./openpi-admission.ts";
import { OpenpiConnection } from "./openpi-connection.ts";
import { CLOSE } from "./protocol.ts";
import { NativeStreamConnection } from "./stream-connection.ts";
import { invalidCharacter, nulProblems } from "./text-guard.ts";
import type { StreamDeps } from "./ws-common.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** Test seam: the connection registry of an app. */
export const streamRegistries = new WeakMap<ModuleOptions["platform"], ConnectionRegistry>();

const OpenpiQuerySchema = Type.Object(
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

/**
 * Real-time streaming: `WS /v1/stream` (native protocol) and `WS /v1/openpi` (+ `GET
 * /v1/openpi/healthz`), one connection registry (session limits, heartbeat, stats push,
 * graceful shutdown). Both call the shared InferenceRunner, so frames are logged, metered and
 * safety-checked like REST calls. docs/streaming.md.
 */
export const streamingModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const runner = inferenceRunners.get(platform);
  if (runner === undefined) throw new Error("the streaming module needs the inference module registered first");
  const cfg = platform.config.stream;
  const registry = new ConnectionRegistry(cfg.maxSessions, {
    redis: platform.redis.client === null ? undefined : platform.redis,
    heartbeatMs: cfg.heartbeatMs,
  });
  streamRegistries.set(platform, registry);
  const deps: StreamDeps = { platform, runner, registry, metrics: createStreamMetrics(platform.metrics.registry) };

  const heartbeat = setInterval(() => registry.heartbeat(), cfg.heartbeatMs);
  heartbeat.unref();
  const statsPush = setInterval(() => registry.pushStats(), cfg.statsIntervalMs);
  statsPush.unref();

  // @fastify/websocket is registered by buildApp (src/app.ts) for every route.
  // Graceful: sessions finish the frame in flight, get their final stats, then close 1001. Any
  // other WebSocket (an upgrade to a plain route, closed at once but waiting up to 30 s for the
  // client's close frame) is cut, so it cannot hold server.close() past the shutdown deadline.
  app.addHook("preClose", async () => {
    clearInterval(heartbeat);
    clearInterval(statsPush);
    await registry.shutdown(Math.max(1_000, Math.floor(platform.config.http.shutdownTimeoutMs / 2)));
    for (const socket of app.websocketServer.clients) socket.terminate();
  });

  const upgradeOnly = (path: string) => () => {
    throw errors.upgradeRequired(path);
  };

  app.route({
    method: "GET",
    url: "/v1/stream",
    schema: {
      tags: ["streaming"],
      summary: "Real-time stream (WebSocket)",
      description:
        "WebSocket upgrade. Send camera frames at your control rate; get one `action` (or `dropped`) per frame. " +
        "Authenticate with an API key (`inference` scope) in the upgrade headers, or (browsers) with a first " +
        '`{"type":"auth","api_key":"..."}` message within 5 s. Messages are JSON text frames or msgpack binary ' +
        "frames (raw image bytes, no base64): start -> started, frame -> action | dropped, stats, stop -> stopped. " +
        "At most one inference in flight per session; newer frames supersede waiting ones unless `must_go`. " +
        "Every inferred frame is metered, logged (source `stream`) and safety-checked. A plain GET answers 426. " +
        "Protocol: docs/streaming.md.",
      security: SECURITY,
      response: {
        101: { type: "null", description: "Switching Protocols: the WebSocket session begins." },
        426: { $ref: "Problem#", description: "Not a WebSocket upgrade." },
      },
    },
    handler: upgradeOnly("/v1/stream"),
    wsHandler: (socket, request) => {
      new NativeStreamConnection(socket, request, deps).open();
    },
  });

  // The upgrade's admission (key, model, slot), from its preHandler to its wsHandler.
  const admissions = new WeakMap<object, OpenpiAdmission>();

  app.route({
    method: "GET",
    url: "/v1/openpi",
    schema: {
      tags: ["streaming"],
      summary: "openpi-compatible policy server (WebSocket)",
      description:
        "WebSocket upgrade speaking openpi's policy-server protocol, so the stock `openpi-client` works with " +
        "`Authorization: Api-Key <key>`: a msgpack metadata frame on connect (model, action_dim, action_horizon, " +
        "unnorm_key), then one msgpack observation -> one msgpack `{actions (H, D) float32, policy_timing, " +
        "server_timing}`; numpy markers as msgpack bin keys. The key, its `inference` scope, the model, the " +
        "unnorm_key and a session slot are checked on the upgrade request: a refusal is an HTTP status with a " +
        "problem+json body (the stock client raises an error naming the status). Errors after the upgrade: a " +
        "text frame `code: detail`, then close 1011. Logged with source `openpi`, metered and safety-checked. " +
        "A plain GET answers 426.",
      security: SECURITY,
      querystring: OpenpiQuerySchema,
      response: {
        101: { type: "null", description: "Switching Protocols: the WebSocket session begins." },
        400: {
          $ref: "Problem#",
          description:
            "invalid_request: a query parameter fails validation; invalid_unnorm_key: an unknown unnorm_key, " +
            "or none for a model with several and no default (`valid_unnorm_keys` lists them).",
        },
        401: { $ref: "Problem#", description: "No API key, or an unknown, revoked, expired or malformed one." },
        403: { $ref: "Problem#", description: "The key lacks the `inference` scope." },
        404: { $ref: "Problem#", description: "unknown_model: no such model (`GET /v1/models` lists them)." },
        422: { $ref: "Problem#", description: "invalid_character: a query parameter holds U+0000 (NUL)." },
        426: { $ref: "Problem#", description: "Not a WebSocket upgrade." },
        429: {
          $ref: "Problem#",
          description: "too_many_sessions: the customer holds all its session slots; or too many failed keys.",
        },
      },
    },
    // Before the schema, so U+0000 in any parameter is named as such (422) rather than as a pattern mismatch.
    preValidation: async (request) => {
      const nul = nulProblems(request.query);
      if (nul.length > 0) throw invalidCharacter(nul, "The query string", "query");
    },
    preHandler: async (request) => {
      if (request.ws) admissions.set(request, await admitOpenpi(deps, request, request.query as OpenpiQuery));
    },
    handler: upgradeOnly("/v1/openpi"),
    wsHandler: (socket, request) => {
      const admission = admissions.get(request);
      if (admission === undefined) {
        socket.close(CLOSE.internalError, "internal_error");
        return;
      }
      new OpenpiConnection(socket, request, deps, request.query as OpenpiQuery, admission).open();
    },
  });

  app.get(
    "/v1/openpi/healthz",
    {
      schema: {
        tags: ["streaming"],
        summary: "openpi health check",
        description: "Answers `OK` like openpi's `GET /healthz`; no authentication. Full health: GET /health.",
        response: { 200: Type.String({ description: "`OK` and a newline.", examples: ["OK\n"] }) },
      },
    },
    async (_request, reply) => {
      reply.type("text/plain; charset=utf-8");
      return "OK\n";
    },
  );
};
