import type { CheckResult } from "../../../../platform/health.ts";
import { injectTraceHeaders } from "../../../../platform/tracing.ts";
import { decodeJsonNumpy, encodeJsonNumpy, isJsonNumpyDoc, jsonNumpyText } from "../../../inference/json-numpy.ts";
import { toNumbers } from "../../../inference/ndarray.ts";
import type { RemoteSettings } from "../../registry.ts";
import type { BackendOutput, BackendRequest, BackendResult, EndpointReport, ModelBackend } from "../types.ts";
import { EndpointPool, endpointName, RemoteCallError } from "./endpoint-pool.ts";
import { createAgents, postBytes } from "./http-post.ts";

/**
 * Forwards to OpenVLA deploy.py-compatible servers: `POST /act` with a json_numpy body
 * `{image: uint8 HxWx3, instruction, unnorm_key}`; the answer is a json_numpy float array of
 * shape [D] (or a JSON list of such arrays, OpenVLA-OFT's chunk). deploy.py reports failures as
 * the JSON string "error" with HTTP 200; that is a failed call here, never an action.
 * The reference server cannot batch, so a batch becomes concurrent single calls.
 */
export class OpenVlaHttpBackend implements ModelBackend {
  readonly kind = "openvla-http" as const;
  readonly pool: EndpointPool;
  private readonly settings: RemoteSettings;
  private readonly actionDim: number;
  private readonly maxChunk: number;
  private readonly agents: ReturnType<typeof createAgents>;

  constructor(modelId: string, settings: RemoteSettings, action: { dim: number; chunk: number }) {
    this.settings = settings;
    this.agents = createAgents(settings.egress);
    this.pool = new EndpointPool(modelId, settings);
    this.actionDim = action.dim;
    this.maxChunk = action.chunk;
  }

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    return Promise.all(
      batch.map((req) => this.one(req).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))),
    );
  }

  private one(req: BackendRequest): Promise<BackendOutput> {
    const { data, height, width } = req.image;
    // A robot's json_numpy image passes through as the text it came in (no second base64 pass);
    // base64 needs no JSON escaping, so the document is assembled around it.
    const b64 = jsonNumpyText(data) ?? (encodeJsonNumpy(data, [height, width, 3]).__numpy__ as string);
    const body =
      `{"image":{"__numpy__":"${b64}","dtype":"|u1","shape":[${height},${width},3]},` +
      `"instruction":${JSON.stringify(req.instruction)},"unnorm_key":${JSON.stringify(req.unnormKey)}}`;
    const headers: Record<string, string> = { "content-type": "application/json" };
    // Tracing on: the remote server's spans join this request's trace under its model span.
    injectTraceHeaders(headers, req.trace?.context);
    return this.pool.call(async (endpoint, signal) => {
      const res = await postBytes(`${endpoint.url}/act`, body, headers, {
        signal,
        maxBytes: this.settings.maxResponseBytes,
        agents: this.agents,
      });
      const where = endpointName(endpoint, "/act");
      if (res.status >= 500 || res.status === 429) {
        throw new RemoteCallError("status", `${where} answered HTTP ${res.status}`);
      }
      if (res.status >= 300 && res.status < 400) {
        throw new RemoteCallError(
          "status",
          `${where} answered a redirect (HTTP ${res.status}), which is never followed`,
          false,
        );
      }
      if (res.status !== 200) {
        throw new RemoteCallError("status", `${where} answered HTTP ${res.status}`, false);
      }
      return { kind: "actions", actions: this.parse(res.body, where) };
    });
  }

  /**
   * Validates the answer like user input: json_numpy float [D], [H, D], or a list of [D]. `where`
   * names the endpoint in messages (`endpointName`).
   */
  parse(bytes: Uint8Array, where: string): number[][] {
    let doc: unknown;
    try {
      doc = JSON.parse(Buffer.from(bytes).toString("utf8"));
    } catch {
      throw new RemoteCallError("invalid_answer", `${where} answered with something that is not JSON`);
    }
    if (doc === "error") throw new RemoteCallError("remote_error", `${where} answered "error" (the server failed)`);
    const invalid = (why: string) =>
      new RemoteCallError("invalid_answer", `${where} answered an invalid action: ${why}`);
    const row = (d: unknown): number[][] => {
      if (!isJsonNumpyDoc(d)) throw invalid("expected a json_numpy array");
      let a: ReturnType<typeof decodeJsonNumpy>;
      try {
        a = decodeJsonNumpy(d, { maxBytes: this.settings.maxResponseBytes, maxDims: 2 });
      } catch (e) {
        throw invalid(e instanceof Error ? e.message : String(e));
      }
      if (a.dtype !== "<f8" && a.dtype !== "<f4") throw invalid(`dtype ${a.dtype}, expected float`);
      const values = toNumbers(a);
      if (!values.every(Number.isFinite)) throw invalid("non-finite values");
      const [h, w] = a.shape.length === 1 ? [1, a.shape[0] as number] : [a.shape[0] as number, a.shape[1] as number];
      if (w !== this.actionDim || h < 1) throw invalid(`shape [${a.shape.join(", ")}], expected [${this.actionDim}]`);
      return Array.from({ length: h }, (_, i) => values.slice(i * w, (i + 1) * w));
    };
    const rows = Array.isArray(doc) ? doc.flatMap((d) => row(d)) : row(doc);
    if (rows.length > this.maxChunk)
      throw invalid(`${rows.length} steps, the model is configured for ${this.maxChunk}`);
    return rows;
  }

  endpoints(): EndpointReport[] {
    return this.pool.report();
  }

  async health(): Promise<CheckResult> {
    return this.pool.health();
  }

  async warmUp(): Promise<void> {}

  async close(): Promise<void> {
    this.pool.close();
    this.agents.close();
  }
}
