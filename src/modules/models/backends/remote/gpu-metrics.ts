import { Counter, Gauge, type Registry } from "prom-client";
import { readBounded } from "./endpoint-pool.ts";
import { parsePromText } from "./prom-text.ts";

/**
 * GPU visibility for remote backends: scrapes each endpoint's Prometheus page (Triton serves
 * one on :8002/metrics) on an interval and keeps what it read: per-GPU utilization and memory
 * (`nv_gpu_utilization`, `nv_gpu_memory_used_bytes`, `nv_gpu_memory_total_bytes`, label
 * `gpu_uuid`) and the mean queue time per request over the last interval, per served model
 * and version (delta `nv_inference_queue_duration_us` / delta `nv_inference_request_success`,
 * else `nv_inference_count`). Nothing is invented: a value the backend does not give is
 * absent, and after `staleAfter` missed scrapes everything read from that endpoint is dropped.
 * Only the operator-configured URL is fetched: no redirects, a timeout, a size limit.
 */
export interface GpuScrapeSettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** Consecutive failed scrapes after which an endpoint's values are dropped. */
  readonly staleAfter: number;
}

export interface GpuReading {
  readonly uuid: string;
  readonly utilization_ratio?: number;
  readonly memory_used_bytes?: number;
  readonly memory_total_bytes?: number;
}

export interface QueueReading {
  readonly model: string;
  readonly version: string;
  /** Mean time a request waited in the backend's queue over the last scrape interval. */
  readonly queue_time_seconds: number;
}

export interface EndpointGpu {
  /** host:port of the inference endpoint (never credentials or paths). */
  readonly endpoint: string;
  /** Its position in the model's endpoint list (what non-superusers see instead of host:port). */
  readonly index: number;
  readonly scraped_at: string;
  readonly gpus: GpuReading[];
  readonly queue: QueueReading[];
}

export interface GpuTarget {
  /** The inference endpoint's base URL (the label is its host:port). */
  readonly endpoint: string;
  readonly metricsUrl: string;
  /** Position of the endpoint in the model's `endpoints` (default: its position here). */
  readonly index?: number;
}

interface Counters {
  readonly queueUs: number;
  readonly requests: number | undefined;
  readonly inferences: number | undefined;
}

interface TargetState {
  readonly index: number;
  readonly label: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  missed: number;
  lastSuccessMs: number | undefined;
  current: { at: number; gpus: GpuReading[]; queue: QueueReading[] } | undefined;
  counters: Map<string, Counters> | undefined;
}

export type GpuLog = (fields: Record<string, unknown>, message: string) => void;

/** host:port of a URL, without credentials. */
export function endpointLabel(url: string): string {
  const u = new URL(url);
  return u.port === "" ? u.hostname : `${u.hostname}:${u.port}`;
}

/** The Prometheus gauges, reading every scraper registered with `add`. */
export class BackendGpuMetrics {
  private readonly sources = new Set<GpuScraper>();
  readonly failures: Counter<"model" | "endpoint">;

  constructor(registry: Registry) {
    const sources = this.sources;
    const each = (fn: (model: string, e: EndpointGpu) => void) => {
      for (const s of sources) for (const e of s.snapshot()) fn(s.modelId, e);
    };
    const gpuGauge = (
      name: string,
      help: string,
      field: "utilization_ratio" | "memory_used_bytes" | "memory_total_bytes",
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["model", "endpoint", "gpu"],
        registers: [registry],
        collect() {
          this.reset();
          each((model, e) => {
            for (const g of e.gpus) {
              const v = g[field];
              if (v !== undefined) this.set({ model, endpoint: e.endpoint, gpu: g.uuid }, v);
            }
          });
        },
      });
    gpuGauge(
      "vla_backend_gpu_utilization_ratio",
      "GPU utilization (0..1) scraped from a remote backend (Triton nv_gpu_utilization).",
      "utilization_ratio",
    );
    gpuGauge(
      "vla_backend_gpu_memory_used_bytes",
      "GPU memory in use scraped from a remote backend (Triton nv_gpu_memory_used_bytes).",
      "memory_used_bytes",
    );
    gpuGauge(
      "vla_backend_gpu_memory_total_bytes",
      "GPU memory size scraped from a remote backend (Triton nv_gpu_memory_total_bytes).",
      "memory_total_bytes",
    );
    new Gauge({
      name: "vla_backend_queue_time_seconds",
      help: "Mean queue time per request in a remote backend over the last scrape interval, by backend model and version.",
      labelNames: ["model", "endpoint", "backend_model", "backend_version"],
      registers: [registry],
      collect() {
        this.reset();
        each((model, e) => {
          for (const q of e.queue) {
            this.set(
              { model, endpoint: e.endpoint, backend_model: q.model, backend_version: q.version },
              q.queue_time_seconds,
            );
          }
        });
      },
    });
    new Gauge({
      name: "vla_backend_metrics_last_success_timestamp_seconds",
      help: "When a remote backend's metrics page was last scraped successfully (Unix seconds).",
      labelNames: ["model", "endpoint"],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of sources) {
          for (const [endpoint, at] of s.lastSuccesses()) this.set({ model: s.modelId, endpoint }, at / 1000);
        }
      },
    });
    this.failures = new Counter({
      name: "vla_backend_metrics_scrape_failures_total",
      help: "Failed scrapes of a remote backend's metrics page (network, status, timeout, size, unparsable).",
      labelNames: ["model", "endpoint"],
      registers: [registry],
    });
  }

  add(s: GpuScraper): void {
    this.sources.add(s);
  }
  remove(s: GpuScraper): void {
    this.sources.delete(s);
  }
}

const key = (model: string, version: string) => `${model}\u0000${version}`;

/** Scrapes one model's endpoints. */
export class GpuScraper {
  readonly modelId: string;
  private readonly targets: TargetState[];
  private readonly settings: GpuScrapeSettings;
  private readonly metrics: BackendGpuMetrics;
  private readonly log: GpuLog | undefined;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    modelId: string,
    targets: readonly GpuTarget[],
    settings: GpuScrapeSettings,
    metrics: BackendGpuMetrics,
    options: { log?: GpuLog; now?: () => number } = {},
  ) {
    this.modelId = modelId;
    this.settings = settings;
    this.metrics = metrics;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.targets = targets.map((t, position) => {
      const u = new URL(t.metricsUrl);
      const headers: Record<string, string> = { accept: "text/plain" };
      if (u.username !== "" || u.password !== "") {
        const user = decodeURIComponent(u.username);
        const pass = decodeURIComponent(u.password);
        headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
        u.username = "";
        u.password = "";
      }
      return {
        index: t.index ?? position,
        label: endpointLabel(t.endpoint),
        url: u.toString(),
        headers,
        missed: 0,
        lastSuccessMs: undefined,
        current: undefined,
        counters: undefined,
      };
    });
    metrics.add(this);
  }

  /** Scrapes now and then every intervalMs (never two rounds at once). */
  start(): void {
    if (this.timer !== undefined) return;
    void this.scrapeAll();
    this.timer = setInterval(() => void this.scrapeAll(), this.settings.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    this.metrics.remove(this);
  }

  /** One round over every endpoint; resolves when done (tests call it directly). */
  scrapeAll(): Promise<void> {
    if (this.running !== undefined) return this.running;
    this.running = Promise.all(this.targets.map((t) => this.scrape(t))).then(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async scrape(t: TargetState): Promise<void> {
    let text: string;
    try {
      const res = await fetch(t.url, {
        headers: t.headers,
        redirect: "error",
        signal: AbortSignal.timeout(this.settings.timeoutMs),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`status ${res.status}`);
      }
      text = Buffer.from(await readBounded(res, this.settings.maxBytes)).toString("utf8");
      this.absorb(t, text);
    } catch (e) {
      this.metrics.failures.inc({ model: this.modelId, endpoint: t.label });
      t.missed += 1;
      const reason = e instanceof Error ? (e.name === "TimeoutError" ? "timeout" : e.message) : String(e);
      if (t.missed === 1 || t.missed === this.settings.staleAfter) {
        this.log?.(
          { model: this.modelId, endpoint: t.label, missed: t.missed, reason },
          t.missed >= this.settings.staleAfter
            ? "backend metrics scrape failing; GPU values dropped as stale"
            : "backend metrics scrape failed",
        );
      }
      if (t.missed >= this.settings.staleAfter) {
        t.current = undefined;
        t.counters = undefined;
      }
    }
  }

  private absorb(t: TargetState, text: string): void {
    const samples = parsePromText(text);
    const gpus = new Map<
      string,
      { utilization_ratio?: number; memory_used_bytes?: number; memory_total_bytes?: number }
    >();
    const counters = new Map<string, { queueUs?: number; requests?: number; inferences?: number }>();
    const counterOf = (labels: Readonly<Record<string, string>>) => {
      const k = key(labels.model ?? "", labels.version ?? "");
      let c = counters.get(k);
      if (c === undefined) {
        c = {};
        counters.set(k, c);
      }
      return c;
    };
    for (const s of samples) {
      if (!Number.isFinite(s.value) || s.value < 0) continue; // NaN/Inf/negative: not a reading
      switch (s.name) {
        case "nv_gpu_utilization":
        case "nv_gpu_memory_used_bytes":
        case "nv_gpu_memory_total_bytes": {
          const uuid = s.labels.gpu_uuid;
          if (uuid === undefined || uuid === "") break;
          const g = gpus.get(uuid) ?? {};
          gpus.set(uuid, g);
          if (s.name === "nv_gpu_utilization") {
            if (s.value <= 1) g.utilization_ratio = s.value;
          } else if (s.name === "nv_gpu_memory_used_bytes") g.memory_used_bytes = s.value;
          else g.memory_total_bytes = s.value;
          break;
        }
        case "nv_inference_queue_duration_us":
          counterOf(s.labels).queueUs = s.value;
          break;
        case "nv_inference_request_success":
          counterOf(s.labels).requests = s.value;
          break;
        case "nv_inference_count":
          counterOf(s.labels).inferences = s.value;
          break;
      }
    }
    const next = new Map<string, Counters>();
    for (const [k, c] of counters) {
      if (c.queueUs !== undefined) next.set(k, { queueUs: c.queueUs, requests: c.requests, inferences: c.inferences });
    }
    const queue: QueueReading[] = [];
    if (t.counters !== undefined) {
      for (const [k, c] of next) {
        const prev = t.counters.get(k);
        if (prev === undefined) continue;
        const dq = c.queueUs - prev.queueUs;
        const dn =
          c.requests !== undefined && prev.requests !== undefined
            ? c.requests - prev.requests
            : c.inferences !== undefined && prev.inferences !== undefined
              ? c.inferences - prev.inferences
              : undefined;
        // No request in the interval, or a counter reset (backend restart): no value.
        if (dn === undefined || dn <= 0 || dq < 0) continue;
        const [model, version] = k.split("\u0000") as [string, string];
        queue.push({ model, version, queue_time_seconds: dq / dn / 1e6 });
      }
    }
    const now = this.now();
    t.counters = next;
    t.missed = 0;
    t.lastSuccessMs = now;
    t.current = {
      at: now,
      gpus: [...gpus].map(([uuid, g]) => ({ uuid, ...g })).sort((a, b) => a.uuid.localeCompare(b.uuid)),
      queue,
    };
  }

  /** Current values per endpoint; endpoints without any value are left out. */
  snapshot(): EndpointGpu[] {
    const out: EndpointGpu[] = [];
    for (const t of this.targets) {
      const c = t.current;
      if (c === undefined || (c.gpus.length === 0 && c.queue.length === 0)) continue;
      out.push({
        endpoint: t.label,
        index: t.index,
        scraped_at: new Date(c.at).toISOString(),
        gpus: c.gpus.map((g) => ({ ...g })),
        queue: c.queue.map((q) => ({ ...q })),
      });
    }
    return out;
  }

  lastSuccesses(): [string, number][] {
    return this.targets.flatMap((t) => (t.lastSuccessMs === undefined ? [] : [[t.label, t.lastSuccessMs]]));
  }
}
