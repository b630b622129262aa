import type { CheckResult } from "../../../../platform/health.ts";
import { injectTraceHeaders } from "../../../../platform/tracing.ts";
import type { BackendSettings } from "../../registry.ts";
import type { BackendRequest, BackendResult, EndpointReport, ModelBackend } from "../types.ts";
import { EndpointPool, endpointName, RemoteCallError } from "./endpoint-pool.ts";
import { createAgents, postBytes } from "./http-post.ts";

type KServeSettings = Extract<BackendSettings, { kind: "kserve-v2" }>;

/**
 * Open Inference Protocol (KServe v2 / Triton) client: one `POST /v2/models/{name}/infer` per
 * batch. The images travel as one UINT8 tensor [B, H, W, 3] with the binary-data extension
 * (`binary_data_size` + `Inference-Header-Content-Length`), the instructions as a BYTES tensor
 * [B] in the JSON. The answer's output (JSON `data` or binary) has shape [B, D] or [B, H, D]
 * and is validated like user input.
 */
const NUMERIC: Record<string, { size: number; read: (v: DataView, off: number) => number }> = {
  FP32: { size: 4, read: (v, o) => v.getFloat32(o, true) },
  FP64: { size: 8, read: (v, o) => v.getFloat64(o, true) },
  INT32: { size: 4, read: (v, o) => v.getInt32(o, true) },
  INT64: { size: 8, read: (v, o) => Number(v.getBigInt64(o, true)) },
};

export class KServeV2Backend implements ModelBackend {
  readonly kind = "kserve-v2" as const;
  readonly pool: EndpointPool;
  private readonly s: KServeSettings;
  private readonly action: { dim: number; chunk: number };
  private counter = 0;
  private readonly agents: ReturnType<typeof createAgents>;

  constructor(modelId: string, settings: KServeSettings, action: { dim: number; chunk: number }) {
    this.s = settings;
    this.agents = createAgents(settings.egress);
    this.pool = new EndpointPool(modelId, settings);
    this.action = action;
  }

  private modelPath(): string {
    const name = encodeURIComponent(this.s.modelName);
    return this.s.modelVersion === undefined
      ? `/v2/models/${name}`
      : `/v2/models/${name}/versions/${encodeURIComponent(this.s.modelVersion)}`;
  }

  /** The request body: JSON header then the raw image bytes. Exposed for tests. */
  encodeRequest(batch: readonly BackendRequest[]): { header: string; body: Buffer } {
    const first = batch[0] as BackendRequest;
    const { width: w, height: h } = first.image;
    const pixels = w * h * 3;
    const images = Buffer.alloc(batch.length * pixels);
    batch.forEach((r, i) => {
      images.set(r.image.data, i * pixels);
    });
    this.counter = (this.counter + 1) % 1e9;
    const header = JSON.stringify({
      id: `vla-${this.counter}`,
      parameters: { unnorm_key: first.unnormKey },
      inputs: [
        {
          name: this.s.imageInput,
          shape: [batch.length, h, w, 3],
          datatype: "UINT8",
          parameters: { binary_data_size: images.byteLength },
        },
        {
          name: this.s.instructionInput,
          shape: [batch.length],
          datatype: "BYTES",
          data: batch.map((r) => r.instruction),
        },
      ],
      outputs: [{ name: this.s.outputName, parameters: { binary_data: false } }],
    });
    return { header, body: Buffer.concat([Buffer.from(header), images]) };
  }

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    // One unnorm_key per request: split the batch by key (the engine usually sends one).
    const byKey = new Map<string, number[]>();
    batch.forEach((r, i) => {
      byKey.set(r.unnormKey, [...(byKey.get(r.unnormKey) ?? []), i]);
    });
    const results: BackendResult[] = new Array(batch.length);
    await Promise.all(
      [...byKey.values()].map(async (idx) => {
        const sub = idx.map((i) => batch[i] as BackendRequest);
        try {
          const rows = await this.call(sub);
          idx.forEach((i, k) => {
            const actions = rows[k] as number[][];
            results[i] =
              this.s.outputKind === "tokens"
                ? { kind: "tokens", tokens: actions.flat() }
                : { kind: this.s.outputKind, actions };
          });
        } catch (e) {
          for (const i of idx) results[i] = e instanceof Error ? e : new Error(String(e));
        }
      }),
    );
    return results;
  }

  private call(batch: readonly BackendRequest[]): Promise<number[][][]> {
    const { header, body } = this.encodeRequest(batch);
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "inference-header-content-length": String(Buffer.byteLength(header)),
    };
    // Tracing on: one call carries a whole batch; it joins the trace of its first traced request.
    injectTraceHeaders(headers, batch.find((r) => r.trace?.context !== undefined)?.trace?.context);
    return this.pool.call(async (endpoint, signal) => {
      // node:http (never follows redirects), through the SSRF guard for a customer's model.
      const res = await postBytes(`${endpoint.url}${this.modelPath()}/infer`, body, headers, {
        signal,
        maxBytes: this.s.maxResponseBytes,
        agents: this.agents,
      });
      const bytes = res.body;
      if (res.status >= 300 && res.status < 400) {
        throw new RemoteCallError(
          "status",
          `${endpointName(endpoint, " infer")} answered a redirect (HTTP ${res.status}), which is never followed`,
          false,
        );
      }
      if (res.status !== 200) {
        let msg = `HTTP ${res.status}`;
        try {
          const e = JSON.parse(Buffer.from(bytes).toString("utf8")) as { error?: unknown };
          if (typeof e.error === "string") msg += `: ${e.error.slice(0, 200)}`;
        } catch {
          // not JSON; keep the status
        }
        const retryable = res.status >= 500 || res.status === 429;
        throw new RemoteCallError("status", `${endpointName(endpoint, " infer")} answered ${msg}`, retryable);
      }
      const headerLength = res.headers["inference-header-content-length"];
      return this.parse(
        bytes,
        typeof headerLength === "string" ? headerLength : null,
        batch.length,
        endpointName(endpoint),
      );
    });
  }

  /** Validates an infer answer: returns per item an (H, D) array. `where` names the endpoint (`endpointName`). */
  parse(bytes: Uint8Array, headerLength: string | null, batchSize: number, where: string): number[][][] {
    const invalid = (why: string) =>
      new RemoteCallError("invalid_answer", `${where} answered an invalid inference: ${why}`);
    let jsonLen = bytes.byteLength;
    if (headerLength !== null) {
      jsonLen = Number(headerLength);
      if (!Number.isInteger(jsonLen) || jsonLen < 0 || jsonLen > bytes.byteLength)
        throw invalid("bad Inference-Header-Content-Length");
    }
    let doc: { outputs?: unknown };
    try {
      doc = JSON.parse(Buffer.from(bytes.subarray(0, jsonLen)).toString("utf8")) as { outputs?: unknown };
    } catch {
      throw invalid("not JSON");
    }
    if (doc === null || typeof doc !== "object" || !Array.isArray(doc.outputs)) throw invalid("no outputs");
    let binOffset = jsonLen;
    let found: number[] | undefined;
    let shape: number[] | undefined;
    for (const o of doc.outputs as unknown[]) {
      if (o === null || typeof o !== "object") throw invalid("malformed output");
      const out = o as {
        name?: unknown;
        shape?: unknown;
        datatype?: unknown;
        data?: unknown;
        parameters?: { binary_data_size?: unknown };
      };
      const size = out.parameters?.binary_data_size;
      let raw: Uint8Array | undefined;
      if (size !== undefined) {
        if (typeof size !== "number" || !Number.isInteger(size) || size < 0 || binOffset + size > bytes.byteLength) {
          throw invalid("bad binary_data_size");
        }
        raw = bytes.subarray(binOffset, binOffset + size);
        binOffset += size;
      }
      if (out.name !== this.s.outputName) continue;
      if (!Array.isArray(out.shape) || !out.shape.every((d) => Number.isInteger(d) && d >= 0))
        throw invalid("bad shape");
      shape = out.shape as number[];
      const count = shape.reduce((a, b) => a * b, 1);
      const dt = NUMERIC[String(out.datatype)];
      if (dt === undefined) throw invalid(`datatype ${String(out.datatype)} is not numeric`);
      if (raw !== undefined) {
        if (raw.byteLength !== count * dt.size) throw invalid("binary output length does not match its shape");
        const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        found = Array.from({ length: count }, (_, i) => dt.read(view, i * dt.size));
      } else {
        if (!Array.isArray(out.data) || out.data.length !== count)
          throw invalid("data length does not match its shape");
        found = (out.data as unknown[]).flat(8).map((v) => (typeof v === "number" ? v : Number.NaN));
        if (found.length !== count) throw invalid("data length does not match its shape");
      }
    }
    if (found === undefined || shape === undefined) throw invalid(`output "${this.s.outputName}" missing`);
    if (!found.every(Number.isFinite)) throw invalid("non-finite values");
    const d = this.s.outputKind === "tokens" ? this.action.dim * this.action.chunk : this.action.dim;
    const [b, h, w] = shape.length === 2 ? [shape[0], 1, shape[1]] : [shape[0], shape[1], shape[2]];
    if (
      shape.length < 2 ||
      shape.length > 3 ||
      b !== batchSize ||
      w !== d ||
      h === undefined ||
      h < 1 ||
      h > this.action.chunk
    ) {
      throw invalid(`shape [${shape.join(", ")}] does not fit a batch of ${batchSize} x ${d}`);
    }
    const per = (h as number) * d;
    return Array.from({ length: batchSize }, (_, i) =>
      Array.from({ length: h as number }, (_r, t) => found.slice(i * per + t * d, i * per + (t + 1) * d)),
    );
  }

  endpoints(): EndpointReport[] {
    return this.pool.report();
  }

  /** Probes `/v2/health/ready` and `/v2/models/{name}/ready` on every endpoint. */
  async health(): Promise<CheckResult> {
    await Promise.all(
      this.pool.endpoints.map(async (e) => {
        try {
          const signal = AbortSignal.timeout(Math.min(2_000, this.s.timeoutMs));
          const get = (url: string) =>
            postBytes(url, "", {}, { signal, maxBytes: 64 * 1024, agents: this.agents, method: "GET" });
          const [server, model] = await Promise.all([
            get(`${e.url}/v2/health/ready`),
            get(`${e.url}${this.modelPath()}/ready`),
          ]);
          e.probeOk = server.status === 200 && model.status === 200;
          if (!e.probeOk) e.lastError = `ready probes answered ${server.status}/${model.status}`;
        } catch (err) {
          e.probeOk = false;
          e.lastError = err instanceof Error ? err.message : String(err);
        }
      }),
    );
    return this.pool.health();
  }

  async warmUp(): Promise<void> {
    const h = await this.health();
    if (h.status === "down") throw new Error(`no KServe endpoint is ready: ${h.detail ?? ""}`);
  }

  async close(): Promise<void> {
    this.pool.close();
    this.agents.close();
  }
}
