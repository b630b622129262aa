import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** Prometheus metrics of the inference engine, registered once per app registry. */
export interface EngineMetrics {
  readonly queueDepth: Gauge<"model">;
  readonly queueWait: Histogram<"model">;
  readonly batchSize: Histogram<"model">;
  readonly modelLatency: Histogram<"model">;
  readonly requests: Counter<"model" | "backend" | "outcome">;
  readonly imageDecodes: Counter<"path">;
  readonly registryReloads: Counter<"outcome">;
  readonly registryLoaded: Gauge;
}

export function createEngineMetrics(registry: Registry): EngineMetrics {
  return {
    queueDepth: new Gauge({
      name: "vla_model_queue_depth",
      help: "Requests waiting in a model's batching queue.",
      labelNames: ["model"],
      registers: [registry],
    }),
    queueWait: new Histogram({
      name: "vla_model_queue_wait_seconds",
      help: "Time a request waited in the batching queue before its batch started.",
      labelNames: ["model"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: "vla_model_batch_size",
      help: "Requests per backend call.",
      labelNames: ["model"],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers: [registry],
    }),
    modelLatency: new Histogram({
      name: "vla_model_latency_seconds",
      help: "Backend time per batch.",
      labelNames: ["model"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    requests: new Counter({
      name: "vla_inference_requests_total",
      help: "Inference requests by model, backend and outcome (ok or an error code).",
      labelNames: ["model", "backend", "outcome"],
      registers: [registry],
    }),
    imageDecodes: new Counter({
      name: "vla_image_decodes_total",
      help: "Images prepared, by path: jpeg_fast (libjpeg on the decode threads or in line), sharp, array.",
      labelNames: ["path"],
      registers: [registry],
    }),
    registryReloads: new Counter({
      name: "vla_model_registry_reloads_total",
      help: "Live reloads of the model registry by outcome: ok, invalid_registry, model_warm_up_failed, shutting_down.",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    registryLoaded: new Gauge({
      name: "vla_model_registry_loaded_timestamp_seconds",
      help: "When the running model registry was loaded (start or the last successful reload), Unix seconds.",
      registers: [registry],
    }),
  };
}
