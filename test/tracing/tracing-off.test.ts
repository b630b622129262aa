import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTraceparent, startChild, TRACING_OFF, tracingSdkLoaded } from "../../src/platform/tracing.ts";
import { buildInferenceApp, type InferenceTestContext, jpeg } from "../inference/helpers.ts";

/** Tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT): no SDK, no hooks, no spans, no header. */
let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildInferenceApp();
});
afterAll(async () => {
  await t?.close();
});

describe("tracing off", () => {
  it("never loads the SDK; the tracer is the API's no-op one and the request carries no trace", async () => {
    expect(t.app.platform.tracing).toBe(TRACING_OFF);
    expect(t.app.platform.tracing.enabled).toBe(false);
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": t.key, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
      payload: { image: (await jpeg(224, 224, 1)).toString("base64"), instruction: "pick", robot_id: "arm-1" },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers.traceparent).toBeUndefined();
    expect(tracingSdkLoaded()).toBe(false);
    const span = TRACING_OFF.tracer.startSpan("x");
    expect(span.isRecording()).toBe(false);
    span.end();
    expect(startChild(undefined, "x")).toBeUndefined();
  });

  it("parses W3C traceparent strictly", () => {
    const ok = parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=abc");
    expect(ok).toMatchObject({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: 1,
    });
    expect(ok?.traceState?.get("vendor")).toBe("abc");
    // A later version may append fields; its first four are read.
    expect(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what")?.traceFlags).toBe(1);
    for (const bad of [42, "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "00-xyz-00f067aa0ba902b7-01"]) {
      expect(parseTraceparent(bad)).toBeUndefined();
    }
  });
});
