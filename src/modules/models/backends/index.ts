import type { ModelDefinition } from "../registry.ts";
import { MockBackend } from "./mock.ts";
import { OnnxBackend } from "./onnx.ts";
import { KServeV2Backend } from "./remote/kserve-v2.ts";
import { OpenVlaHttpBackend } from "./remote/openvla-http.ts";
import type { ModelBackend } from "./types.ts";

/** Builds the backend a registry entry names. */
export function createBackend(def: ModelDefinition): ModelBackend {
  const b = def.backend;
  switch (b.kind) {
    case "mock":
      return new MockBackend({
        actionDim: def.action.dim,
        chunk: def.action.chunk,
        latencyMs: b.latencyMs,
        perItemMs: b.perItemMs,
        output: b.output,
      });
    case "onnx":
      return new OnnxBackend({
        modelId: def.id,
        modelDir: b.modelDir,
        config: b.onnx,
        executionProviders: b.executionProviders,
        intraOpThreads: b.intraOpThreads,
        interOpThreads: b.interOpThreads,
        runInWorker: b.runInWorker,
      });
    case "openvla-http":
      return new OpenVlaHttpBackend(def.id, b, def.action);
    case "kserve-v2":
      return new KServeV2Backend(def.id, b, def.action);
  }
}
