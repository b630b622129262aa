import type { IncomingMessage } from "node:http";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors, isAppError } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { loadSuspension, SUSPENSION_TOPIC, suspendedError } from "../../platform/suspension.ts";
import { inferenceRunners } from "../inference/inference.module.ts";
import { streamExhausted, streamHeaders, streamTimeError } from "../rate-limit/stream-time.ts";
import { ConnectionRegistry, createStreamMetrics } from "./connections.ts";
import { registerOpenpiRoutes } from "./openpi.routes.ts";
import { NativeStreamConnection } from "./stream-connection.ts";
import { type StreamDeps, upgradeCredential, verifyPrincipal } from "./ws-common.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** Test seam: the connection registry of an app. */
export const streamRegistries = new WeakMap<ModuleOptions["platform"], ConnectionRegistry>();

/**
 * Real-time streaming: `WS /v1/stream` (native protocol) and `WS /v1/openpi` (also at `/`, with
 * `GET /healthz`; openpi.routes.ts), one connection registry (session limits, heartbeat, stats push,
 * graceful shutdown, stream-time charges). Both call the shared InferenceRunner, so frames are logged
 * and safety-checked like REST calls; sessions are metered in stream time, not per frame. docs/streaming.md.
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
  const deps: StreamDeps = {
    platform,
    runner,
    registry,
    metrics: createStreamMetrics(platform.metrics.registry),
    upgradeHeaders: new WeakMap(),
    verified: new WeakMap(),
  };
  // The 101 answer carries the stream-time RateLimit fields the upgrade's preHandler found.
  app.websocketServer.on("headers", (headers: string[], req: IncomingMessage) => {
    const extra = deps.upgradeHeaders.get(req);
    if (extra === undefined) return;
    for (const [k, v] of Object.entries(extra)) if (v !== "") headers.push(`${k}: ${v}`);
  });

  // A suspension closes the customer's open streams on every instance (close 4403). The reason is
  // read once per instance that holds one of its streams, never on a frame's path; an unsuspension
  // finds no suspension and closes nothing.
  platform.invalidation.on(SUSPENSION_TOPIC, (customerId) => {
    if (!registry.hasCustomer(customerId)) return;
    loadSuspension(platform.database.db, customerId)
      .then((s) => {
        if (s !== null) registry.revokeCustomer(customerId, suspendedError(s));
      })
      .catch((err: unknown) =>
        app.log.warn({ err, customer_id: customerId }, "closing a suspended customer's streams failed"),
      );
  });

  const heartbeat = setInterval(() => {
    registry.heartbeat();
    void registry.chargeTime();
  }, cfg.heartbeatMs);
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
        "Every inferred frame is logged (source `stream`) and safety-checked; the session is metered in stream time " +
        "(robot-seconds per UTC day and month, not per frame; frames above the tier's frame-rate ceiling are " +
        "`dropped` `rate_ceiling`), and closed 4429 when the allowance runs out. A plain GET answers 426. " +
        "Protocol: docs/streaming.md.",
      security: SECURITY,
      response: {
        101: { type: "null", description: "Switching Protocols: the WebSocket session begins." },
        426: { $ref: "Problem#", description: "Not a WebSocket upgrade." },
        429: {
          $ref: "Problem#",
          description:
            "quota_exceeded: the customer's stream time (`stream_day` or `stream_month`) is used up; `Retry-After` says when it resets.",
        },
      },
    },
    // A header-authenticated upgrade whose customer has no stream time left is refused with an HTTP
    // 429 (Retry-After, RateLimit fields); an admitted one gets the fields on its 101. Credential
    // problems are left to the WebSocket (error message + close 1008), as before.
    preHandler: async (request) => {
      const credential = upgradeCredential(request);
      if (credential === undefined || isAppError(credential)) return;
      const verified = verifyPrincipal(platform, credential, request);
      deps.verified.set(request, verified);
      let customerId: string;
      try {
        customerId = (await verified).customerId;
      } catch (e) {
        if (isAppError(e)) return;
        throw e;
      }
      const time = await platform.limits.streamTime.peek(customerId);
      if (streamExhausted(time).length > 0) {
        deps.metrics.rejected.inc({ endpoint: "stream", reason: "stream_time" });
        throw streamTimeError(time);
      }
      deps.upgradeHeaders.set(request.raw, streamHeaders(time));
    },
    handler: upgradeOnly("/v1/stream"),
    wsHandler: (socket, request) => {
      new NativeStreamConnection(socket, request, deps).open();
    },
  });

  registerOpenpiRoutes(app, deps);
};
