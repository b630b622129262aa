import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { InferenceEngine } from "../../src/modules/inference/inference.service.ts";
import { decodeJsonNumpy, encodeJsonNumpy } from "../../src/modules/inference/json-numpy.ts";
import { PROJECT_ROOT, parseRegistry } from "../../src/modules/models/registry.ts";
import { AppError } from "../../src/platform/errors.ts";
import { type FakeServer, json, sleep, startServer } from "./fake-servers.ts";
import { jpeg } from "./helpers.ts";

async function codeOf(p: Promise<unknown>): Promise<{ code: string | undefined; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: e instanceof AppError ? e.code : "not-app-error", message: e instanceof Error ? e.message : "" };
  }
  return { code: undefined, message: "" };
}

/** The action a protocol-faithful fake OpenVLA server computes from what it received. */
function fakeAction(imageMean: number, instruction: string): number[] {
  return [imageMean / 255, instruction.length / 100, 0.01, -0.02, 0.03, -0.04, 1];
}

/** deploy.py behaviour: POST /act with json_numpy body; answers json_numpy <f8 [7] or "error". */
function openvlaHandler(received: { instruction?: string; unnormKey?: string; shape?: readonly number[] }[]) {
  return (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    if (req.method !== "POST" || req.url !== "/act") return json(res, 404, { detail: "Not Found" });
    try {
      const doc = JSON.parse(body.toString()) as { image: unknown; instruction: string; unnorm_key?: string };
      const image = decodeJsonNumpy(doc.image);
      if (image.dtype !== "|u1" || image.shape.length !== 3) return json(res, 200, "error");
      received.push({ instruction: doc.instruction, unnormKey: doc.unnorm_key, shape: image.shape });
      let sum = 0;
      for (const v of image.data as Uint8Array) sum += v;
      const action = fakeAction(sum / image.data.length, doc.instruction);
      return json(res, 200, encodeJsonNumpy(new Float64Array(action), [7]));
    } catch {
      return json(res, 200, "error"); // the reference's quirk: failures are "error" with 200
    }
  };
}

const servers: FakeServer[] = [];
async function server(handler: FakeServer["handler"]): Promise<FakeServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}
const engines: InferenceEngine[] = [];
function engineFor(backend: Record<string, unknown>, extra: Record<string, unknown> = {}): InferenceEngine {
  const reg = parseRegistry(
    {
      models: [
        {
          id: "remote",
          backend,
          action: { dim: 7, chunk: 1 },
          dataset_statistics: "models/mock-openvla-7b/dataset_statistics.json",
          default_unnorm_key: "bridge_orig",
          ...extra,
        },
      ],
    },
    PROJECT_ROOT,
  );
  const e = new InferenceEngine(reg);
  engines.push(e);
  return e;
}

let image: Buffer;
beforeAll(async () => {
  image = await jpeg(160, 120, 4);
});
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const req = (e: InferenceEngine, instruction = "Pick up the cup") =>
  e.infer({ model: "remote", imageBytes: image, instruction, customerId: "c" });

describe("openvla-http backend", () => {
  it("forwards image (uint8 224x224x3 json_numpy), instruction and unnorm_key; returns the server's action", async () => {
    const received: { instruction?: string; unnormKey?: string; shape?: readonly number[] }[] = [];
    const s = await server(openvlaHandler(received));
    const e = engineFor({ kind: "openvla-http", endpoints: [s.url] });
    const r = await req(e);
    expect(r.backend).toBe("openvla-http");
    expect(received[0]).toEqual({ instruction: "Pick up the cup", unnormKey: "bridge_orig", shape: [224, 224, 3] });
    expect(r.action).toHaveLength(7);
    expect(r.action[1]).toBeCloseTo("Pick up the cup".length / 100, 12);
  });

  it("forwards a robot's json_numpy image as the very text it sent, and an instruction with quotes intact", async () => {
    const bodies: string[] = [];
    const received: { instruction?: string; unnormKey?: string; shape?: readonly number[] }[] = [];
    const handler = openvlaHandler(received);
    const s = await server((q, b, res) => {
      bodies.push(b.toString());
      return handler(q, b, res);
    });
    const e = engineFor({ kind: "openvla-http", endpoints: [s.url] });
    const pixels = Buffer.alloc(224 * 224 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 31) & 255;
    const text = pixels.toString("base64");
    const imageArray = decodeJsonNumpy({ __numpy__: text, dtype: "|u1", shape: [224, 224, 3] });
    const instruction = 'put the "red" block \\ on the tray';
    const r = await e.infer({ model: "remote", imageArray, instruction, customerId: "c" });
    expect(r.action).toHaveLength(7);
    expect(received[0]).toEqual({ instruction, unnormKey: "bridge_orig", shape: [224, 224, 3] });
    const doc = JSON.parse(bodies[0] as string) as { image: { __numpy__: string } };
    expect(doc.image.__numpy__ === text).toBe(true);
  });

  it("refuses an answer larger than max_response_bytes (declared or streamed) as invalid_model_output", async () => {
    const big = await server((_q, _b, res) => json(res, 200, { pad: "x".repeat(5000) }));
    const e = engineFor({ kind: "openvla-http", endpoints: [big.url], max_response_bytes: 1024, retries: 0 });
    const r = await codeOf(req(e));
    expect(r.code).toBe("invalid_model_output");
    expect(r.message).toContain("exceeds the limit");
    const chunked = await server((_q, _b, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write(`{"pad":"${"x".repeat(3000)}`);
      res.end('"}');
    });
    const e2 = engineFor({ kind: "openvla-http", endpoints: [chunked.url], max_response_bytes: 1024, retries: 0 });
    expect((await codeOf(req(e2))).code).toBe("invalid_model_output");
  });

  it('treats the "error"-with-200 quirk as a failure and retries on another endpoint', async () => {
    const quirk = await server((_q, _b, res) => json(res, 200, "error"));
    const good = await server(openvlaHandler([]));
    const e = engineFor({ kind: "openvla-http", endpoints: [quirk.url, good.url], retries: 1 });
    for (let i = 0; i < 4; i++) expect((await req(e)).action).toHaveLength(7);
    expect(good.hits).toBe(4);
    const only = engineFor({ kind: "openvla-http", endpoints: [quirk.url], retries: 1 });
    const r = await codeOf(req(only));
    expect(r.code).toBe("model_unavailable");
    expect(r.message).toContain('"error"');
  });

  it("times out a slow endpoint and retries elsewhere; alone it is model_unavailable", async () => {
    const slow = await server(async (_q, _b, res) => {
      await sleep(10_000);
      json(res, 200, "error");
    });
    const good = await server(openvlaHandler([]));
    // Generous timeout: under CPU contention the good endpoint must still answer in time.
    const e = engineFor({ kind: "openvla-http", endpoints: [slow.url, good.url], timeout_ms: 600, retries: 1 });
    const results = await Promise.all([req(e), req(e)]);
    expect(results.every((r) => r.action.length === 7)).toBe(true);
    const only = engineFor({ kind: "openvla-http", endpoints: [slow.url], timeout_ms: 300 });
    const r = await codeOf(req(only));
    expect(r.code).toBe("model_unavailable");
    expect(r.message).toMatch(/did not answer within 300 ms/);
  });

  it.each([
    [
      "NaN values",
      () => ({ status: 200, body: encodeJsonNumpy(new Float64Array([0, 0, 0, Number.NaN, 0, 0, 0]), [7]) }),
    ],
    ["wrong dimension", () => ({ status: 200, body: encodeJsonNumpy(new Float64Array([0, 0, 0]), [3]) })],
    ["wrong dtype", () => ({ status: 200, body: encodeJsonNumpy(new Uint8Array(7), [7]) })],
    ["length mismatch", () => ({ status: 200, body: { __numpy__: "AAAA", dtype: "<f8", shape: [7] } })],
    ["not an array", () => ({ status: 200, body: { action: [1, 2, 3] } })],
    ["oversize body", () => ({ status: 200, body: "x".repeat(5_000) })],
  ])("validates garbage answers like user input: %s -> invalid_model_output", async (_name, make) => {
    const bad = await server((_q, _b, res) => {
      const { status, body } = make();
      json(res, status, body);
    });
    const e = engineFor({ kind: "openvla-http", endpoints: [bad.url], retries: 0, max_response_bytes: 4096 });
    expect((await codeOf(req(e))).code).toBe("invalid_model_output");
  });

  it("the operator's endpoint addresses never reach the customer: endpoints are named by position", async () => {
    const failing = await server((_q, _b, res) => json(res, 503, { detail: "busy" }));
    const slow = await server(async (_q, _b, res) => {
      await sleep(10_000);
      json(res, 200, "error");
    });
    const closed = await server(openvlaHandler([]));
    await closed.close();
    const cases: [string, RegExp][] = [
      [failing.url, /endpoint 1 answered HTTP 503/],
      [slow.url, /endpoint 1 did not answer within 300 ms/],
      [closed.url, /endpoint 1 could not be reached \(ECONNREFUSED\)/],
    ];
    for (const [url, shown] of cases) {
      const e = engineFor({ kind: "openvla-http", endpoints: [url], retries: 0, timeout_ms: 300 });
      const err = (await req(e).catch((x: unknown) => x)) as AppError;
      expect(err.code).toBe("model_unavailable");
      expect(err.message).toMatch(shown);
      expect(err.message).not.toContain("127.0.0.1");
      // The whole story stays in the cause, for the operator's logs.
      expect(String((err.cause as Error).message)).toContain("127.0.0.1");
    }
  });

  it("opens the circuit of a failing endpoint and stops sending to it", async () => {
    const failing = await server((_q, _b, res) => json(res, 500, { detail: "boom" }));
    const good = await server(openvlaHandler([]));
    const e = engineFor({
      kind: "openvla-http",
      endpoints: [failing.url, good.url],
      retries: 1,
      circuit: { failure_threshold: 2, cooldown_ms: 600_000 },
    });
    for (let i = 0; i < 8; i++) await req(e);
    expect(failing.hits).toBe(2);
    expect(good.hits).toBe(8);
    const health = await e.healthCheck();
    expect(health.status).toBe("degraded");
    expect(health.detail).toContain("open");
    // The deep health route's view: each endpoint's circuit.
    const [report] = await e.backendReports();
    expect(report).toMatchObject({ backend: "openvla-http", status: "degraded" });
    expect(report?.endpoints).toEqual([
      expect.objectContaining({ url: failing.url, circuit: "open", consecutive_failures: 2 }),
      expect.objectContaining({ url: good.url, circuit: "closed", consecutive_failures: 0, last_error: null }),
    ]);
  });

  it("balances by least outstanding requests", async () => {
    // Both servers hold every answer until all six requests have arrived, so all six are
    // outstanding together whatever the machine's speed.
    let arrived = 0;
    const release: (() => void)[] = [];
    const held = async (q: IncomingMessage, b: Buffer, res: ServerResponse) => {
      arrived += 1;
      if (arrived < 6) await new Promise<void>((r) => release.push(r));
      else for (const r of release.splice(0)) r();
      openvlaHandler([])(q, b, res);
    };
    const a = await server(held);
    const b = await server(held);
    const e = engineFor(
      { kind: "openvla-http", endpoints: [a.url, b.url] },
      { batching: { max_concurrent_batches: 8 } },
    );
    await Promise.all(Array.from({ length: 6 }, () => req(e)));
    expect([a.hits, b.hits]).toEqual([3, 3]);
  });
});

/** Triton-like OIP server: binary-data extension in, JSON or binary output out. */
function kserveHandler(opts: {
  binaryOut?: boolean;
  ready?: boolean;
  log?: { batch: number; instructions: string[] }[];
  /** The answer to the first inference call waits for this (keeps the model busy). */
  holdFirst?: Promise<void>;
}) {
  let calls = 0;
  return async (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const url = req.url ?? "";
    if (req.method === "GET" && (url === "/v2/health/ready" || url === "/v2/models/vla/ready")) {
      res.writeHead(opts.ready === false ? 503 : 200);
      return res.end();
    }
    if (req.method !== "POST" || url !== "/v2/models/vla/infer") return json(res, 404, { error: "unknown model" });
    const headerLen = Number(req.headers["inference-header-content-length"]);
    const head = JSON.parse(body.subarray(0, headerLen).toString()) as {
      inputs: {
        name: string;
        shape: number[];
        datatype: string;
        parameters?: { binary_data_size?: number };
        data?: string[];
      }[];
    };
    const img = head.inputs.find((i) => i.name === "image");
    const text = head.inputs.find((i) => i.name === "instruction");
    if (img === undefined || text === undefined || img.datatype !== "UINT8")
      return json(res, 400, { error: "bad inputs" });
    const [b, h, w, c] = img.shape as [number, number, number, number];
    if (img.parameters?.binary_data_size !== b * h * w * c || body.byteLength - headerLen !== b * h * w * c) {
      return json(res, 400, { error: "binary size mismatch" });
    }
    opts.log?.push({ batch: b, instructions: text.data ?? [] });
    if (calls++ === 0 && opts.holdFirst !== undefined) await opts.holdFirst;
    const values = Array.from({ length: b * 7 }, (_, i) => (i % 7) / 10 + Math.floor(i / 7));
    if (opts.binaryOut) {
      const raw = Buffer.from(new Float32Array(values).buffer);
      const out = JSON.stringify({
        model_name: "vla",
        outputs: [
          { name: "actions", shape: [b, 7], datatype: "FP32", parameters: { binary_data_size: raw.byteLength } },
        ],
      });
      res.writeHead(200, {
        "inference-header-content-length": Buffer.byteLength(out),
        "content-type": "application/octet-stream",
      });
      return res.end(Buffer.concat([Buffer.from(out), raw]));
    }
    return json(res, 200, {
      model_name: "vla",
      outputs: [{ name: "actions", shape: [b, 7], datatype: "FP64", data: values }],
    });
  };
}

describe("kserve-v2 backend", () => {
  const backend = (url: string, extra: Record<string, unknown> = {}) => ({
    kind: "kserve-v2",
    endpoints: [url],
    model_name: "vla",
    ...extra,
  });

  it("sends a whole batch as one UINT8 binary tensor and maps outputs back in order", async () => {
    const log: { batch: number; instructions: string[] }[] = [];
    let release = () => {};
    const holdFirst = new Promise<void>((r) => (release = r));
    const s = await server(kserveHandler({ log, holdFirst }));
    const e = engineFor(backend(s.url), { batching: { max_batch_size: 3, max_concurrent_batches: 1 } });
    await e.warmUp();
    // The first call goes alone to the idle model and is held; the next three wait and form a batch.
    const first = req(e, "first");
    await vi.waitFor(() => expect(log).toHaveLength(1));
    const rs = ["a", "b", "c"].map((i) => req(e, i));
    await vi.waitFor(() => expect(e.describe("remote").stats.queue_depth).toBe(3));
    release();
    await first;
    await Promise.all(rs);
    // Preprocessing is asynchronous, so the batch order may differ from the call order.
    expect(log.map((l) => l.batch)).toEqual([1, 3]);
    expect([...(log[1]?.instructions ?? [])].sort()).toEqual(["a", "b", "c"]);
    // Row k of the answer belongs to the k-th item of the batch.
    for (const [i, instruction] of ["a", "b", "c"].entries()) {
      const k = log[1]?.instructions.indexOf(instruction) as number;
      expect((await rs[i])?.action).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6].map((v) => v + k));
    }
    expect((await rs[0])?.backend).toBe("kserve-v2");
    expect(e.describe("remote").status).toBe("ready");
  });

  it("reads binary outputs (Inference-Header-Content-Length in the answer)", async () => {
    const s = await server(kserveHandler({ binaryOut: true }));
    const r = await req(engineFor(backend(s.url)));
    expect(r.action[3]).toBeCloseTo(0.3, 6);
  });

  it("a 400 with {error} fails without retry; a wrong output shape is invalid_model_output", async () => {
    const s = await server((_q, _b, res) => json(res, 400, { error: "input 'image' has wrong shape" }));
    const e = engineFor(backend(s.url, { retries: 3 }));
    const r = await codeOf(req(e));
    expect(r.code).toBe("model_unavailable");
    expect(r.message).toContain("wrong shape");
    expect(s.hits).toBe(1);
    const g = await server((_q, _b, res) =>
      json(res, 200, { outputs: [{ name: "actions", shape: [1, 3], datatype: "FP32", data: [1, 2, 3] }] }),
    );
    expect((await codeOf(req(engineFor(backend(g.url))))).code).toBe("invalid_model_output");
  });

  it("health follows the ready probes", async () => {
    const s = await server(kserveHandler({ ready: false }));
    const e = engineFor(backend(s.url));
    await e.warmUp();
    expect(e.describe("remote").status).toBe("down");
    expect((await e.healthCheck()).status).toBe("down");
    s.handler = kserveHandler({ ready: true });
    expect((await e.healthCheck()).status).toBe("ok");
    expect(e.describe("remote").status).toBe("ready");
  });
});
