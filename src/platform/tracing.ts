import {
  type Attributes,
  type Context,
  createContextKey,
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Config } from "../config.ts";

/**
 * OpenTelemetry tracing (docs/operations.md, "Tracing"). Off unless OTEL_EXPORTER_OTLP_ENDPOINT
 * is set: then nothing but `@opentelemetry/api` is loaded, no hook is installed and every
 * `startChild` returns undefined at the cost of one comparison. On: the SDK is imported
 * dynamically, spans go through a BatchSpanProcessor to an OTLP/HTTP (JSON) exporter.
 *
 * Context is passed explicitly (no global provider, no async context manager): the request span's
 * Context is kept on the request, the inference path hands it down, and the Context carries the
 * app's tracer, so code below the routes needs nothing but that Context. Several apps in one
 * process (tests) each have their own provider.
 *
 * Attributes never carry credentials, emails, instructions or image bytes: ids, routes, sizes,
 * outcomes and timings only.
 */
export interface Tracing {
  readonly enabled: boolean;
  /** The app's tracer (the API's no-op tracer when off). */
  readonly tracer: Tracer;
  /** Exports what has ended so far. */
  flush(): Promise<void>;
  /** Flushes and stops the exporter. */
  shutdown(): Promise<void>;
}

const TRACER_KEY = createContextKey("vla.tracer");
const TRACER_NAME = "vla-inference-api";

/** The off state: the API's no-op tracer, nothing to flush. */
export const TRACING_OFF: Tracing = {
  enabled: false,
  tracer: trace.getTracerProvider().getTracer(TRACER_NAME),
  async flush() {},
  async shutdown() {},
};

/** True once the SDK was imported in this process (tests check that off never loads it). */
let sdkLoaded = false;
export function tracingSdkLoaded(): boolean {
  return sdkLoaded;
}

/** Builds tracing from config; imports the SDK only when an endpoint is configured. */
export async function createTracing(config: Config): Promise<Tracing> {
  const t = config.tracing;
  if (t.endpoint === undefined) return TRACING_OFF;
  const [{ BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler }, otlp, resources] =
    await Promise.all([
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
    ]);
  sdkLoaded = true;
  const exporter = new otlp.OTLPTraceExporter({
    url: `${t.endpoint.replace(/\/+$/, "")}/v1/traces`,
    timeoutMillis: t.exportTimeoutMs,
  });
  const provider = new BasicTracerProvider({
    resource: resources.resourceFromAttributes({
      "service.name": t.serviceName,
      "service.version": config.version,
      "deployment.environment.name": config.env,
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(t.sampleRatio) }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        scheduledDelayMillis: t.exportDelayMs,
        maxQueueSize: 8192,
        maxExportBatchSize: 512,
      }),
    ],
  });
  const tracer = provider.getTracer(TRACER_NAME, config.version);
  return {
    enabled: true,
    tracer,
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

/** The root Context of `tracer`'s traces: spans started under it (`startChild`) use `tracer`. */
export function tracingRoot(tracer: Tracer): Context {
  return ROOT_CONTEXT.setValue(TRACER_KEY, tracer);
}

// --- W3C trace context (https://www.w3.org/TR/trace-context/) ---------------------------------

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * A `traceparent` header's span context, or undefined when it is absent or malformed (version
 * ff, all-zero ids, wrong lengths, upper case, or extra fields under version 00): the request
 * then starts a new trace. Never throws.
 */
export function parseTraceparent(header: unknown, tracestate?: unknown): SpanContext | undefined {
  if (typeof header !== "string" || header.length > 512) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (m === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  const sc: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & 1,
    isRemote: true,
    ...(typeof tracestate === "string" && tracestate.length <= 512 ? { traceState: safeTraceState(tracestate) } : {}),
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

function safeTraceState(raw: string) {
  try {
    return createTraceState(raw);
  } catch {
    return undefined;
  }
}

/** `00-<trace id>-<span id>-<flags>` for a span context. */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) === 1 ? "01" : "00"}`;
}

/** Adds `traceparent` (and `tracestate`) for the span of `ctx` to outgoing headers; no-op without one. */
export function injectTraceHeaders(headers: Record<string, string>, ctx: Context | undefined): void {
  if (ctx === undefined) return;
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || !isSpanContextValid(sc)) return;
  headers.traceparent = formatTraceparent(sc);
  const state = sc.traceState?.serialize();
  if (state !== undefined && state !== "") headers.tracestate = state;
}

// --- Spans ----------------------------------------------------------------------------------

/**
 * Starts a child span of `parent`'s span with the tracer `parent` carries; undefined when
 * tracing is off (no parent). End it with `endSpan`.
 */
export function startChild(parent: Context | undefined, name: string, attributes?: Attributes): Span | undefined {
  if (parent === undefined) return undefined;
  const tracer = parent.getValue(TRACER_KEY) as Tracer | undefined;
  return tracer?.startSpan(name, { kind: SpanKind.INTERNAL, ...(attributes ? { attributes } : {}) }, parent);
}

/** The span context of `ctx`'s span (links, e.g. a batch write to the requests it stores). */
export function spanContextOf(ctx: Context): SpanContext | undefined {
  return trace.getSpanContext(ctx);
}

/** The Context whose span is `span`, below `parent` (for grandchildren and outgoing headers). */
export function contextOf(parent: Context, span: Span): Context {
  return trace.setSpan(parent, span);
}

/** Ends a span, marking it failed when `error` is given (its code and class, never its message's data). */
export function endSpan(span: Span | undefined, error?: unknown, attributes?: Attributes): void {
  if (span === undefined) return;
  if (attributes !== undefined) span.setAttributes(attributes);
  if (error !== undefined) {
    const code = (error as { code?: unknown }).code;
    span.setStatus({ code: SpanStatusCode.ERROR, message: typeof code === "string" ? code : "error" });
    span.setAttribute("error.type", typeof code === "string" ? code : ((error as Error)?.name ?? "Error"));
  }
  span.end();
}

/** Runs `fn` in a child span of `parent` (or plainly when tracing is off). */
export async function traced<T>(
  parent: Context | undefined,
  name: string,
  fn: (span: Span | undefined) => Promise<T>,
  attributes?: Attributes,
): Promise<T> {
  if (parent === undefined) return fn(undefined);
  const span = startChild(parent, name, attributes);
  try {
    const v = await fn(span);
    endSpan(span);
    return v;
  } catch (e) {
    endSpan(span, e);
    throw e;
  }
}

/**
 * One request's way through a model's batching queue: `queue.wait` from submission until its
 * batch is dispatched, then `model.infer` until the backend answered. `context` (the model span's)
 * is what remote backends send on as `traceparent`.
 */
export class QueueTrace {
  private queue: Span | undefined;
  private model: Span | undefined;
  context: Context | undefined;
  private readonly parent: Context;
  private readonly attributes: Attributes;

  constructor(parent: Context, attributes: Attributes) {
    this.parent = parent;
    this.attributes = attributes;
    this.queue = startChild(parent, "queue.wait", attributes);
  }

  /** The batch holding this request starts. */
  dispatched(batchSize: number): void {
    endSpan(this.queue);
    this.queue = undefined;
    this.model = startChild(this.parent, "model.infer", { ...this.attributes, "vla.batch_size": batchSize });
    if (this.model !== undefined) this.context = contextOf(this.parent, this.model);
  }

  /** The backend answered (or the request failed or timed out); idempotent. */
  finished(error?: unknown): void {
    endSpan(this.queue, error);
    endSpan(this.model, error);
    this.queue = undefined;
    this.model = undefined;
  }
}

// --- HTTP requests ----------------------------------------------------------------------------

declare module "fastify" {
  interface FastifyRequest {
    /** The request span's Context; null when tracing is off. */
    traceContext: Context | null;
  }
}

const requestSpans = new WeakMap<FastifyRequest, Span>();

/** The request span's Context (undefined when tracing is off): the parent of the request's spans. */
export function requestTrace(request: FastifyRequest): Context | undefined {
  return request.traceContext ?? undefined;
}

/**
 * Installs the request span: started in the first onRequest hook (a valid incoming `traceparent`
 * makes it that span's child), its `traceparent` set on the response, ended in onResponse (or
 * when the client aborts). Installs nothing when tracing is off.
 */
export function installRequestTracing(app: FastifyInstance, tracing: Tracing): void {
  app.decorateRequest("traceContext", null);
  if (!tracing.enabled) return;
  const base = tracingRoot(tracing.tracer);
  app.addHook("onRequest", (request, reply, done) => {
    const remote = parseTraceparent(request.headers.traceparent, request.headers.tracestate);
    const parent = remote === undefined ? base : trace.setSpanContext(base, remote);
    const span = tracing.tracer.startSpan(
      request.method,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": request.method, "vla.request_id": request.id },
      },
      parent,
    );
    requestSpans.set(request, span);
    request.traceContext = trace.setSpan(parent, span);
    reply.header("traceparent", formatTraceparent(span.spanContext()));
    done();
  });
  const end = (request: FastifyRequest, reply: FastifyReply | undefined, aborted: boolean) => {
    const span = requestSpans.get(request);
    if (span === undefined) return;
    requestSpans.delete(request);
    const route = request.routeOptions.url;
    if (route !== undefined) {
      span.updateName(`${request.method} ${route}`);
      span.setAttribute("http.route", route);
    }
    const principal = request.principal;
    if (principal !== null) span.setAttribute("vla.customer_id", principal.customerId);
    if (aborted) span.setAttribute("vla.aborted", true);
    else if (reply !== undefined) {
      span.setAttribute("http.response.status_code", reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  };
  app.addHook("onResponse", (request, reply, done) => {
    end(request, reply, false);
    done();
  });
  app.addHook("onRequestAbort", (request, done) => {
    end(request, undefined, true);
    done();
  });
}
