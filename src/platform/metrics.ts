import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * One Prometheus registry per app instance (never the global one, so several apps in one
 * test process do not collide). Modules add their own metrics to `registry`.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<"method" | "route" | "status">;
  readonly httpErrors: Counter<"method" | "route" | "status">;
  readonly httpDuration: Histogram<"method" | "route">;
}

export function createMetrics(info: { version: string; environment: string }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const appInfo = new Gauge({
    name: "vla_app_info",
    help: "Application version and environment (always 1).",
    labelNames: ["version", "environment"],
    registers: [registry],
  });
  appInfo.set({ version: info.version, environment: info.environment }, 1);

  const started = Date.now();
  new Gauge({
    name: "vla_uptime_seconds",
    help: "Seconds since this app instance was built.",
    registers: [registry],
    collect() {
      this.set((Date.now() - started) / 1000);
    },
  });

  return {
    registry,
    httpRequests: new Counter({
      name: "vla_http_requests_total",
      help: "HTTP requests by method, route template and status code.",
      labelNames: ["method", "route", "status"],
      registers: [registry],
    }),
    httpErrors: new Counter({
      name: "vla_http_request_errors_total",
      help: "HTTP responses with status >= 400, by method, route template and status code.",
      labelNames: ["method", "route", "status"],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: "vla_http_request_duration_seconds",
      help: "HTTP request duration by method and route template.",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}
