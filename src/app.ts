import { randomUUID } from "node:crypto";
import path from "node:path";
import type { Writable } from "node:stream";
import AjvCompiler from "@fastify/ajv-compiler";
import cors from "@fastify/cors";
import formbody from "@fastify/formbody";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import underPressure from "@fastify/under-pressure";
import websocket from "@fastify/websocket";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import type { Config } from "./config.ts";
import { modules } from "./modules/index.ts";
import { createEngine } from "./modules/inference/inference.service.ts";
import { createRateLimits } from "./modules/rate-limit/rate-limits.ts";
import { createAuditLog } from "./platform/audit.ts";
import { AuthRegistry } from "./platform/auth.ts";
import {
  type BatchSink,
  BatchWriter,
  type BatchWriterTuning,
  createBatchWriterMetrics,
} from "./platform/batch-writer.ts";
import { createDatabase, type Database } from "./platform/db/client.ts";
import { registerReplicaMetrics } from "./platform/db/replica-metrics.ts";
import { DeletionRegistry } from "./platform/deletion.ts";
import { type Resolver, systemResolver } from "./platform/egress.ts";
import { Mailer, outboxTransport, smtpTransport } from "./platform/email.ts";
import { errors } from "./platform/errors.ts";
import { ExportRegistry } from "./platform/exports.ts";
import { HealthRegistry } from "./platform/health.ts";
import { installEdgeGuards, storableDateTimeFormat } from "./platform/http/edge-guards.ts";
import { installErrorHandler } from "./platform/http/error-handler.ts";
import { installNotFound } from "./platform/http/not-found.ts";
import { ProblemSchema } from "./platform/http/problem.ts";
import { securityHeadersOf } from "./platform/http/security-headers.ts";
import { InvalidationBus } from "./platform/invalidation.ts";
import { JobRegistry } from "./platform/jobs.ts";
import { Lifecycle } from "./platform/lifecycle.ts";
import { createLoggerOptions } from "./platform/logger.ts";
import { createMetrics } from "./platform/metrics.ts";
import type { ModulePlugin } from "./platform/module.ts";
import { createObjectStore, type ObjectStore } from "./platform/object-store.ts";
import { registerOpenApi } from "./platform/openapi.ts";
import type { Platform } from "./platform/platform.ts";
import { createRedis, type RedisHandle } from "./platform/redis.ts";
import { createTracing, installRequestTracing } from "./platform/tracing.ts";

export type App = FastifyInstance;

export interface BuildOptions {
  /** Use this database instead of creating one from config (tests pass an isolated one). */
  readonly database?: Database;
  readonly redis?: RedisHandle;
  /** Send logs here instead of stdout (tests capture them to check redaction). */
  readonly logStream?: Writable;
  /** Apply migrations before serving; defaults to config.db.migrateOnStart. */
  readonly migrate?: boolean;
  /** Extra plugins registered after the modules (tests and benchmarks add probe routes here). */
  readonly plugins?: readonly ModulePlugin[];
  /** Clock for limits and key expiry (tests); defaults to Date.now. */
  readonly now?: () => number;
  /**
   * False for CLI commands that build the app only to use its registries (e.g. `export`): modules
   * then skip startup recovery of the server's jobs and their timers. Default true.
   */
  readonly backgroundJobs?: boolean;
  /** Use this object store instead of the one the config names (tests: a failing store). */
  readonly objectStore?: ObjectStore;
  /** How customer model endpoints' host names resolve (tests inject one; default: the system's). */
  readonly egressResolver?: Resolver;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Query strings, path parameters and headers arrive as text, so their validator coerces
 * (`?limit=20` is a number). Bodies are typed JSON: coercing them would quietly accept
 * `"instruction": 7` as "7" or `"count": "3"` as 3, so bodies are validated without coercion.
 */
const ajvCompilers = AjvCompiler();
function bodyStrictValidatorFactory(
  externalSchemas: Parameters<ReturnType<typeof AjvCompiler>>[0],
  options: Parameters<ReturnType<typeof AjvCompiler>>[1],
) {
  const base = (options ?? {}) as { customOptions?: Record<string, unknown> };
  // date-time: only instants PostgreSQL and JS Dates can hold (see edge-guards.ts).
  const withFormats = { ...base, onCreate: storableDateTimeFormat } as typeof options;
  const coercing = ajvCompilers(externalSchemas, withFormats);
  const strict = ajvCompilers(externalSchemas, {
    ...withFormats,
    customOptions: { ...base.customOptions, coerceTypes: false },
  } as typeof options);
  return (route: Parameters<typeof coercing>[0]) => (route.httpPart === "body" ? strict(route) : coercing(route));
}

/** Builds the whole service; never listens (server.ts does). */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<App> {
  const app = Fastify({
    logger: createLoggerOptions(config, options.logStream),
    // Accept a caller's X-Request-Id when it is a sane token, otherwise mint one.
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: "request_id" }),
    trustProxy: config.http.trustProxy,
    bodyLimit: config.http.bodyLimitBytes,
    connectionTimeout: config.http.requestTimeoutMs,
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // Requests arriving while draining get our own problem+json 503 (onRequest hook below).
    return503OnClosing: false,
    forceCloseConnections: "idle",
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: "array", useDefaults: true } },
    schemaController: { compilersFactory: { buildValidator: bodyStrictValidatorFactory } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const metrics = createMetrics({ version: config.version, environment: config.env });
  const health = new HealthRegistry();
  const lifecycle = new Lifecycle();
  // Registered first so it closes last (close hooks run in reverse), after every flush hook
  // (the batch writers' spans) has ended its spans.
  const tracing = await createTracing(config);
  lifecycle.onClose("tracing", () => tracing.shutdown());
  const ownsDatabase = options.database === undefined;
  const database =
    options.database ??
    (await createDatabase({
      url: config.db.url,
      dataDir: config.dataDir,
      poolMax: config.db.poolMax,
      statementTimeoutMs: config.db.statementTimeoutMs,
      readUrl: config.db.readUrl,
      readMaxLagMs: config.db.readMaxLagMs,
      readCheckMs: config.db.readCheckMs,
    }));
  registerReplicaMetrics(metrics.registry, database);
  const ownsRedis = options.redis === undefined;
  const redis = options.redis ?? createRedis({ ...config.redis, log: app.log });

  if (options.migrate ?? config.db.migrateOnStart) await database.migrate();

  const batchMetrics = createBatchWriterMetrics(metrics.registry);
  const email = new Mailer({
    transport:
      config.email.smtpUrl === undefined
        ? outboxTransport(config.email.outboxDir, app.log)
        : smtpTransport(config.email.smtpUrl),
    from: config.email.from,
    log: app.log,
    registry: metrics.registry,
  });

  const objectStore = options.objectStore ?? createObjectStore(config.objectStore);
  if (options.objectStore === undefined) lifecycle.onClose("object-store", () => objectStore.close?.());
  const now = options.now ?? Date.now;
  const invalidation = new InvalidationBus(redis);
  const limits = createRateLimits({ config, database, redis, metrics, health, lifecycle, invalidation, now });
  const platform: Platform = {
    config,
    database,
    redis,
    metrics,
    health,
    lifecycle,
    auth: new AuthRegistry(),
    email,
    backgroundJobs: options.backgroundJobs ?? true,
    deletion: new DeletionRegistry(),
    audit: createAuditLog(database.db),
    exports: new ExportRegistry(),
    objectStore,
    egressResolver: options.egressResolver ?? systemResolver,
    notices: [],
    async batchWriter<T>(name: string, sink: BatchSink<T>, tuning: BatchWriterTuning = {}) {
      const writer = new BatchWriter<T>({
        flushIntervalMs: config.batchWriterFlushMs,
        ...tuning,
        name,
        sink,
        journalDir: path.join(config.dataDir, "journal"),
        metrics: batchMetrics,
        log: app.log,
        tracer: tracing.enabled ? tracing.tracer : undefined,
      });
      // Every writer's series exist from the start (0), so /metrics and the deep health list it.
      for (const c of [batchMetrics.written, batchMetrics.spilled, batchMetrics.replayed, batchMetrics.dropped]) {
        c.inc({ writer: name }, 0);
      }
      batchMetrics.deadLettered.inc({ writer: name }, 0);
      await writer.start();
      lifecycle.onFlush(`batch-writer:${name}`, () => writer.close());
      return writer;
    },
    engine: createEngine(config, { metrics: metrics.registry, health, lifecycle, log: app.log }),
    now,
    invalidation,
    limits,
    jobs: new JobRegistry(now),
    tracing,
  };
  app.decorateRequest("principal", null);
  app.decorate("platform", platform);

  // WebSockets at the root, before any hook or route: the plugin's hooks then see every route and
  // the 404 handler, so an upgrade request to a path without a wsHandler has its socket closed
  // after the answer (registered inside one module, other paths left it in CLOSE_WAIT). Its
  // onRequest hook (which marks the request as an upgrade) must run before any hook that can
  // refuse the request (shutdown, load shedding, the edge guards), or a refused upgrade keeps its
  // socket too. Streaming closes its sessions gracefully in its own preClose hook.
  await app.register(websocket, {
    options: { maxPayload: config.stream.maxFrameBytes, perMessageDeflate: false },
    preClose: async () => {},
    errorHandler: (error, socket, request) => {
      request.log.info({ err: error }, "websocket error (client closed or sent an invalid frame)");
      socket.terminate();
    },
  });

  // The request span starts before any hook that may refuse the request (shutdown, shedding, auth).
  installRequestTracing(app, tracing);

  health.register(
    "database",
    async () => {
      await database.ping();
      return { status: "ok", detail: database.kind };
    },
    { critical: true },
  );
  health.register("redis", async () => {
    if (redis.client === null) return { status: "disabled", detail: "REDIS_URL not set; in-process fallbacks" };
    await redis.ping();
    return { status: "ok" };
  });

  health.register("email", async () => email.health());
  // Queued mail goes out before shutdown, bounded by half the shutdown deadline.
  lifecycle.onFlush("email", async () => {
    await email.drain(Math.max(1_000, Math.floor(config.http.shutdownTimeoutMs / 2)));
  });
  lifecycle.onClose("email", () => email.close());

  // Infrastructure closes last, after every module has flushed.
  if (ownsDatabase) lifecycle.onClose("database", () => database.close());
  if (ownsRedis) lifecycle.onClose("redis", () => redis.close());
  app.addHook("preClose", async () => {
    lifecycle.markShuttingDown();
  });
  app.addHook("onClose", async (instance) => {
    for (const f of await lifecycle.run()) instance.log.error({ err: f.error, hook: f.name }, "shutdown hook failed");
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    if (lifecycle.isShuttingDown) throw errors.shuttingDown();
  });
  // While draining, answer in-flight requests with Connection: close so keep-alive sockets
  // end with them and server.close() completes instead of waiting for the keep-alive timeout.
  app.addHook("onSend", async (_request, reply) => {
    if (lifecycle.isShuttingDown) reply.header("connection", "close");
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    const labels = { method: request.method, route, status: String(reply.statusCode) };
    metrics.httpRequests.inc(labels);
    if (reply.statusCode >= 400) metrics.httpErrors.inc(labels);
    metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  installErrorHandler(app, config.http.publicBaseUrl);
  installEdgeGuards(app);
  app.addSchema(ProblemSchema);

  // Helmet's headers, computed once: @fastify/helmet rebuilt the middleware (and re-parsed the
  // CSP) on every request, about a sixth of the CPU of a trivial route at saturation.
  const securityHeaders = securityHeadersOf({
    // JSON API: nothing may be framed or loaded from our responses. /docs sets its own CSP.
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: "same-site" },
    hsts: config.env === "production",
  });
  app.addHook("onRequest", (_request, reply, done) => {
    reply.headers(securityHeaders);
    done();
  });
  await app.register(cors, {
    origin: config.http.corsOrigins.includes("*") ? true : [...config.http.corsOrigins],
    credentials: config.http.corsCredentials,
    exposedHeaders: [
      "X-Request-Id",
      "RateLimit",
      "RateLimit-Policy",
      "Retry-After",
      "Server-Timing",
      "X-Problem-Code",
      "X-Problem-Detail",
      "X-Safety-Status",
      "X-Safety-Violations",
      "X-Inference-Id",
      "VLA-Experiment",
      "traceparent",
    ],
    maxAge: 600,
  });
  await app.register(formbody, { bodyLimit: config.http.bodyLimitBytes });

  if (config.http.maxEventLoopDelayMs > 0) {
    await app.register(underPressure, {
      maxEventLoopDelay: config.http.maxEventLoopDelayMs,
      sampleInterval: config.http.eventLoopSampleMs,
      retryAfter: 1,
      pressureHandler: () => {
        throw errors.overloaded(1);
      },
    });
  }

  installNotFound(app, { baseUrl: config.http.publicBaseUrl, perMinute: config.http.notFoundPerMinute });
  await registerOpenApi(app, config);

  for (const mod of modules) await app.register(mod, { platform });
  for (const plugin of options.plugins ?? []) await app.register(plugin, { platform });

  await app.ready();
  return app;
}
