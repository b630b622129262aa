/**
 * The ONNX session's thread. onnxruntime-node runs `session.run` synchronously on the calling
 * thread (inside a setImmediate), so on the main thread every model run would block the event
 * loop: HTTP parsing, image decoding callbacks and the batching scheduler would all wait for
 * it. Here it runs beside the event loop; `onnx.ts` talks to it with transferred buffers.
 *
 * Messages in:  { id, b, images: Uint8Array [b, h, w, 3], tokens: BigInt64Array [b, seq] }
 * Messages out: { type: "ready" } | { type: "load-error", message, modelDir: boolean }
 *               | { type: "result", id, data: Float32Array, dims, images }   (images handed back for reuse)
 *               | { type: "error", id, message, images }
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";

export interface OnnxWorkerData {
  readonly modelPath: string;
  readonly executionProviders: readonly string[];
  readonly intraOpThreads: number;
  readonly interOpThreads: number;
  readonly imageName: string;
  readonly tokensName: string;
  readonly outputName: string;
  readonly height: number;
  readonly width: number;
  readonly seq: number;
}

export interface OnnxRunMessage {
  readonly id: number;
  readonly b: number;
  readonly images: Uint8Array;
  readonly tokens: BigInt64Array;
}

export type OnnxWorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "load-error"; readonly message: string; readonly modelDir: boolean }
  | {
      readonly type: "result";
      readonly id: number;
      readonly outputType: string;
      readonly data: Float32Array | undefined;
      readonly dims: readonly number[];
      readonly images: Uint8Array;
    }
  | { readonly type: "error"; readonly id: number; readonly message: string; readonly images: Uint8Array };

const port = parentPort;
if (port === null) throw new Error("onnx-worker.ts must run as a worker thread");
const d = workerData as OnnxWorkerData;

let session: ort.InferenceSession;
try {
  session = await ort.InferenceSession.create(d.modelPath, {
    executionProviders: [...d.executionProviders],
    intraOpNumThreads: d.intraOpThreads,
    interOpNumThreads: d.interOpThreads,
    graphOptimizationLevel: "all",
  });
  for (const name of [d.imageName, d.tokensName]) {
    if (!session.inputNames.includes(name)) {
      port.postMessage({ type: "load-error", message: `model.onnx has no input "${name}"`, modelDir: true });
      process.exit(0);
    }
  }
  if (!session.outputNames.includes(d.outputName)) {
    port.postMessage({ type: "load-error", message: `model.onnx has no output "${d.outputName}"`, modelDir: true });
    process.exit(0);
  }
} catch (e) {
  port.postMessage({ type: "load-error", message: e instanceof Error ? e.message : String(e), modelDir: false });
  process.exit(0);
}

port.on("message", (m: OnnxRunMessage) => {
  void run(m);
});
port.postMessage({ type: "ready" } satisfies OnnxWorkerReply);

async function run(m: OnnxRunMessage): Promise<void> {
  try {
    const feeds = {
      [d.imageName]: new ort.Tensor("uint8", m.images, [m.b, d.height, d.width, 3]),
      [d.tokensName]: new ort.Tensor("int64", m.tokens, [m.b, d.seq]),
    };
    const result = await session.run(feeds, [d.outputName]);
    const out = result[d.outputName];
    const data = out?.type === "float32" ? (out.data as Float32Array) : undefined;
    const reply: OnnxWorkerReply = {
      type: "result",
      id: m.id,
      outputType: out?.type ?? "missing",
      data,
      dims: out?.dims ?? [],
      images: m.images,
    };
    // The logits are copied (7 KB per item); the image buffer goes back without a copy.
    port?.postMessage(reply, [m.images.buffer as ArrayBuffer]);
  } catch (e) {
    port?.postMessage(
      { type: "error", id: m.id, message: e instanceof Error ? e.message : String(e), images: m.images },
      [m.images.buffer as ArrayBuffer],
    );
  }
}
