import type { IncomingHttpHeaders } from "node:http";
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { tracingRoot } from "../../src/platform/tracing.ts";
import { type FakeServer, json, startServer } from "../engine/fake-servers.ts";
import { jpeg } from "../engine/helpers.ts";

/** Remote model backends send the request's model span on as `traceparent` (W3C). */
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("test");

const servers: FakeServer[] = [];
const engines: InferenceEngine[] = [];
let image: Buffer;
beforeAll(async () => {
  image = await jpeg(160, 120, 4);
});
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  exporter.reset();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await provider.shutdown();
});

function engineFor(backend: Record<string, unknown>): InferenceEngine {
  const reg = parseRegistry(
    {
      models: [
        {
          id: "remote",
          backend,
          action: { dim: 7, chunk: 1 },
          dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
          default_unnorm_key: "bridge_orig",
        },
      ],
    },
    PROJECT_ROOT,
  );
  const e = new InferenceEngine(reg);
  engines.push(e);
  return e;
}

/** Infers under a fresh request span; returns the request span's trace id and what the call did. */
async function tracedInfer(e: InferenceEngine) {
  const request = tracer.startSpan("request", {}, tracingRoot(tracer));
  const ctx = trace.setSpan(tracingRoot(tracer), request);
  const outcome = await e
    .infer({ model: "remote", imageBytes: image, instruction: "pick", customerId: "c", trace: ctx })
    .then(
      () => "ok",
      (err: unknown) => (err as { code?: string }).code ?? "error",
    );
  request.end();
  const model = exporter.getFinishedSpans().find((s) => s.name === "model.infer");
  return { traceId: request.spanContext().traceId, requestSpanId: request.spanContext().spanId, model, outcome };
}

describe("traceparent to remote backends", () => {
  it("openvla-http: POST /act carries the model span as traceparent", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const s = await startServer((req, _body, res) => {
      seen.push(req.headers);
      return json(res, 200, encodeJsonNumpy(new Float64Array([0, 0, 0, 0, 0, 0, 1]), [7]));
    });
    servers.push(s);
    const r = await tracedInfer(engineFor({ kind: "openvla-http", endpoints: [s.url] }));
    expect(r.outcome).toBe("ok");
    expect(r.model).toBeDefined();
    expect(r.model?.parentSpanContext?.spanId).toBe(r.requestSpanId);
    expect(seen[0]?.traceparent).toBe(`00-${r.traceId}-${r.model?.spanContext().spanId}-01`);
  });

  it("kserve-v2: the infer call carries it too (and a failed call ends the model span failed)", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const s = await startServer((req, _body, res) => {
      if (req.url?.endsWith("/infer")) seen.push(req.headers);
      return json(res, 400, { error: "no" });
    });
    servers.push(s);
    const r = await tracedInfer(engineFor({ kind: "kserve-v2", endpoints: [s.url], model_name: "vla" }));
    expect(r.outcome).not.toBe("ok");
    expect(seen[0]?.traceparent).toBe(`00-${r.traceId}-${r.model?.spanContext().spanId}-01`);
    expect(r.model?.status.code).toBe(2);
  });

  it("sends no traceparent when tracing is off", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const s = await startServer((req, _body, res) => {
      seen.push(req.headers);
      return json(res, 200, encodeJsonNumpy(new Float64Array([0, 0, 0, 0, 0, 0, 1]), [7]));
    });
    servers.push(s);
    const e = engineFor({ kind: "openvla-http", endpoints: [s.url] });
    await e.infer({ model: "remote", imageBytes: image, instruction: "pick", customerId: "c" });
    expect(seen[0]?.traceparent).toBeUndefined();
  });
});
