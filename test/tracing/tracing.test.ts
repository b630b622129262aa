import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, pattern } from "../inference/helpers.ts";
import { attr, type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./otlp-receiver.ts";

/**
 * Tracing on: an OTLP/HTTP receiver on loopback gets one inference's spans. The app's exporter is
 * flushed explicitly (the batch processor's own delay is set far beyond the test).
 */
let receiver: OtlpReceiver;
let t: InferenceTestContext;
let img: string;

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  t = await buildInferenceApp({
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SERVICE_NAME: "vla-test",
    OTEL_BSP_SCHEDULE_DELAY: "600000",
  });
  img = (await jpeg(224, 224, 1)).toString("base64");
});
afterAll(async () => {
  await t?.close();
  await receiver?.close();
});

const infer = (headers: Record<string, string> = {}) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": t.key, ...headers },
    payload: { image: img, instruction: "pick up the red block", robot_id: "arm-1" },
  });

/** Flushes log rows (their batch_write span) and the exporter; returns the spans of `traceId`. */
async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  await flushLogs(t.app);
  await t.app.platform.tracing.flush();
  return receiver.spans.filter((s) => s.traceId === traceId);
}

const CHILDREN = ["auth", "rate_limit", "image.decode", "queue.wait", "model.infer", "safety.check"];

describe("tracing on (OTLP/HTTP)", () => {
  it("exports one inference as a request span with its children, under the client's traceparent", async () => {
    const res = await infer({ traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` });
    expect(res.statusCode, res.body).toBe(200);
    const spans = await spansOf(TRACE_ID);
    const request = spans.find((s) => s.name === "POST /v1/inference");
    expect(request, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
    if (request === undefined) return;
    expect(request.service).toBe("vla-test");
    expect(request.kind).toBe(2); // SERVER
    expect(request.parentSpanId).toBe(CLIENT_SPAN);
    expect(attr(request, "http.route")).toBe("/v1/inference");
    expect(Number(attr(request, "http.response.status_code"))).toBe(200);
    // The response names the request span: clients can find their call in the trace.
    expect(res.headers.traceparent).toBe(`00-${TRACE_ID}-${request.spanId}-01`);
    for (const name of CHILDREN) {
      const child = spans.find((s) => s.name === name);
      expect(child, `${name} in ${JSON.stringify(spans.map((s) => s.name))}`).toBeDefined();
      expect(child?.parentSpanId, name).toBe(request.spanId);
    }
    expect(attr(spans.find((s) => s.name === "model.infer") as ReceivedSpan, "vla.model")).toBe(
      res.json().model as string,
    );
    // The log row's batch write is its own trace, linked to the request span.
    const write = receiver.spans.find(
      (s) => s.name === "batch_write" && (s.links ?? []).some((l) => l.spanId === request.spanId),
    );
    expect(write).toBeDefined();
    expect(write?.links?.find((l) => l.spanId === request.spanId)?.traceId).toBe(TRACE_ID);
    expect(attr(write as ReceivedSpan, "vla.writer")).toBe("inference-logs");
    // Never a credential, the instruction or image bytes in what is exported.
    const exported = receiver.bodies.join("\n");
    expect(exported).not.toContain(t.key);
    expect(exported).not.toContain("pick up the red block");
    expect(exported).not.toContain(img.slice(0, 64));
  });

  it("starts a new trace for a missing or malformed traceparent (never an error)", async () => {
    for (const bad of [
      undefined,
      "garbage",
      `00-${"0".repeat(32)}-${CLIENT_SPAN}-01`, // all-zero trace id
      `00-${TRACE_ID}-${"0".repeat(16)}-01`, // all-zero parent id
      `ff-${TRACE_ID}-${CLIENT_SPAN}-01`, // forbidden version
      `00-${TRACE_ID.toUpperCase()}-${CLIENT_SPAN}-01`,
      `00-${TRACE_ID}-${CLIENT_SPAN}-01-extra`, // version 00 has exactly four fields
    ]) {
      const res = await infer(bad === undefined ? {} : { traceparent: bad });
      expect(res.statusCode, `${bad}: ${res.body}`).toBe(200);
      const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(res.headers.traceparent));
      expect(tp, String(bad)).not.toBeNull();
      const traceId = (tp as RegExpExecArray)[1] as string;
      expect(traceId).not.toBe(TRACE_ID);
      const spans = await spansOf(traceId);
      const request = spans.find((s) => s.name === "POST /v1/inference");
      expect(request?.parentSpanId ?? "", String(bad)).toBe("");
    }
  });

  it("returns traceparent on /act and on a 401, whose auth span is marked failed with its code", async () => {
    const raw = pattern(224, 224, 2);
    const act = await t.app.inject({
      method: "POST",
      url: "/act",
      headers: {
        "content-type": "application/json",
        "x-api-key": t.key,
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-00`,
      },
      payload: JSON.stringify({
        image: { __numpy__: raw.toString("base64"), dtype: "|u1", shape: [224, 224, 3] },
        instruction: "pick up the red block",
        unnorm_key: "bridge_orig",
      }),
    });
    expect(act.statusCode, act.body).toBe(200);
    // An unsampled parent (flags 00): the trace continues unsampled, nothing is recorded.
    expect(act.headers.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`));
    const bad = await infer({ "x-api-key": "vla_nope" });
    expect(bad.statusCode).toBe(401);
    const tp = String(bad.headers.traceparent).split("-")[1] as string;
    const spans = await spansOf(tp);
    const auth = spans.find((s) => s.name === "auth");
    expect(auth?.status?.code).toBe(2); // ERROR
    expect(auth?.status?.message).toBe(bad.json().code);
    expect(
      Number(attr(spans.find((s) => s.name === "POST /v1/inference") as ReceivedSpan, "http.response.status_code")),
    ).toBe(401);
  });
});
