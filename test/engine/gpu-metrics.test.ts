import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it, vi } from "vitest";
import { BackendGpuMetrics, GpuScraper } from "../../src/modules/models/backends/remote/gpu-metrics.ts";
import { PROJECT_ROOT } from "../../src/modules/models/registry.ts";
import type { Principal } from "../../src/platform/auth.ts";
import { buildTestApp } from "../helpers/app.ts";
import { type FakeServer, startServer } from "./fake-servers.ts";
import { GPU0, GPU1, type TritonState, tritonMetrics } from "./triton-metrics.ts";

const servers: FakeServer[] = [];
/** Requests for the redirect target (a redirect must never be followed). */
const followed: string[] = [];
async function triton(state: TritonState, mode: { status?: number; body?: string } = {}): Promise<FakeServer> {
  const s = await startServer((req, _body, res) => {
    if (req.url === "/elsewhere") followed.push(req.url);
    if (req.url !== "/metrics") {
      res.writeHead(404);
      return res.end();
    }
    const text = mode.body ?? tritonMetrics(state);
    const status = mode.status ?? 200;
    res.writeHead(status, {
      "content-type": "text/plain; version=0.0.4",
      ...(status >= 300 && status < 400 ? { location: "/elsewhere" } : {}),
    });
    res.end(text);
  });
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const settings = { intervalMs: 60_000, timeoutMs: 2_000, maxBytes: 64 * 1024, staleAfter: 2 };

async function series(registry: Registry, name: string) {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
}

describe("GpuScraper against a loopback Triton metrics page", () => {
  it("reads per-GPU utilization and memory, and queue time per request from counter deltas", async () => {
    const state = { queueUs: 1_000_000, requests: 100, inferences: 400 };
    const srv = await triton(state);
    const registry = new Registry();
    const metrics = new BackendGpuMetrics(registry);
    const port = new URL(srv.url).port;
    const scraper = new GpuScraper(
      "remote",
      [{ endpoint: `http://user:secret@127.0.0.1:${port}/v2`, metricsUrl: `${srv.url}/metrics` }],
      settings,
      metrics,
    );
    await scraper.scrapeAll();
    const first = scraper.snapshot();
    expect(first).toHaveLength(1);
    expect(first[0]?.endpoint).toBe(`127.0.0.1:${port}`);
    expect(first[0]?.gpus).toEqual([
      { uuid: GPU0, utilization_ratio: 0.62, memory_used_bytes: 17_179_869_184, memory_total_bytes: 85_899_345_920 },
      { uuid: GPU1, utilization_ratio: 0, memory_used_bytes: 524_288_000, memory_total_bytes: 85_899_345_920 },
    ]);
    // One scrape gives no interval: no queue time yet (never an invented number).
    expect(first[0]?.queue).toEqual([]);
    expect(await series(registry, "vla_backend_queue_time_seconds")).toEqual([]);

    state.queueUs += 50_000; // 50 ms over 20 requests
    state.requests += 20;
    state.inferences += 80;
    await scraper.scrapeAll();
    // idle_model had no request in the interval: absent.
    expect(scraper.snapshot()[0]?.queue).toEqual([{ model: "openvla", version: "1", queue_time_seconds: 0.0025 }]);

    const util = await series(registry, "vla_backend_gpu_utilization_ratio");
    expect(util).toContainEqual({ value: 0.62, labels: { model: "remote", endpoint: `127.0.0.1:${port}`, gpu: GPU0 } });
    const queue = await series(registry, "vla_backend_queue_time_seconds");
    expect(queue).toEqual([
      {
        value: 0.0025,
        labels: { model: "remote", endpoint: `127.0.0.1:${port}`, backend_model: "openvla", backend_version: "1" },
      },
    ]);
    const text = await registry.metrics();
    expect(text).not.toContain("secret");
    expect(text).toContain(
      `vla_backend_gpu_memory_total_bytes{model="remote",endpoint="127.0.0.1:${port}",gpu="${GPU0}"} 85899345920`,
    );
    expect((await series(registry, "vla_backend_metrics_last_success_timestamp_seconds"))[0]?.value).toBeGreaterThan(0);
    await scraper.stop();
    expect(await series(registry, "vla_backend_gpu_utilization_ratio")).toEqual([]);
  });

  it("a counter reset gives no queue time for that interval", async () => {
    const state = { queueUs: 1_000_000, requests: 100, inferences: 100 };
    const srv = await triton(state);
    const scraper = new GpuScraper(
      "remote",
      [{ endpoint: srv.url, metricsUrl: `${srv.url}/metrics` }],
      settings,
      new BackendGpuMetrics(new Registry()),
    );
    await scraper.scrapeAll();
    Object.assign(state, { queueUs: 10, requests: 5, inferences: 5 }); // backend restarted
    await scraper.scrapeAll();
    expect(scraper.snapshot()[0]?.queue).toEqual([]);
    await scraper.stop();
  });

  it("garbage, errors and redirects count as failures; values go stale after N missed scrapes", async () => {
    const state = { queueUs: 0, requests: 0, inferences: 0 };
    const mode: { status?: number; body?: string } = {};
    const srv = await triton(state, mode);
    const registry = new Registry();
    const log = vi.fn();
    const scraper = new GpuScraper(
      "remote",
      [{ endpoint: srv.url, metricsUrl: `${srv.url}/metrics` }],
      settings,
      new BackendGpuMetrics(registry),
      { log },
    );
    await scraper.scrapeAll();
    expect(scraper.snapshot()).toHaveLength(1);

    mode.body = "<html>not metrics</html>";
    await scraper.scrapeAll();
    // One miss (staleAfter 2): the last values are still shown.
    expect(scraper.snapshot()).toHaveLength(1);
    mode.status = 302;
    mode.body = "";
    await scraper.scrapeAll();
    expect(scraper.snapshot()).toEqual([]);
    expect(await series(registry, "vla_backend_gpu_utilization_ratio")).toEqual([]);
    const failures = await series(registry, "vla_backend_metrics_scrape_failures_total");
    expect(failures.map((f) => f.value)).toEqual([2]);
    expect(log).toHaveBeenCalledTimes(2);
    expect(JSON.stringify(log.mock.calls)).not.toContain("/metrics");
    expect(followed).toEqual([]);

    // Recovery: values come back; the queue needs two fresh scrapes again.
    delete mode.status;
    delete mode.body;
    await scraper.scrapeAll();
    expect(scraper.snapshot()[0]?.gpus).toHaveLength(2);
    expect(scraper.snapshot()[0]?.queue).toEqual([]);
    await scraper.stop();
  });

  it("an answer over the size limit is a failure", async () => {
    const srv = await triton({ queueUs: 0, requests: 0, inferences: 0 }, { body: `# ${"x".repeat(5000)}\n` });
    const registry = new Registry();
    const scraper = new GpuScraper(
      "remote",
      [{ endpoint: srv.url, metricsUrl: `${srv.url}/metrics` }],
      { ...settings, maxBytes: 1024 },
      new BackendGpuMetrics(registry),
    );
    await scraper.scrapeAll();
    expect(scraper.snapshot()).toEqual([]);
    expect((await series(registry, "vla_backend_metrics_scrape_failures_total"))[0]?.value).toBe(1);
    await scraper.stop();
  });
});

const principal: Principal = {
  kind: "api_key",
  customerId: "cust_1",
  userId: null,
  apiKeyId: "key_1",
  scopes: ["inference"],
  isSuperuser: false,
  tier: "free",
};

describe("GPU visibility in the app", () => {
  it("scrapes on the interval into /metrics and GET /v1/models/{id}; a failing endpoint adds nothing", async () => {
    const good = await triton({ queueUs: 5_000, requests: 10, inferences: 10 });
    const bad = await triton({ queueUs: 0, requests: 0, inferences: 0 }, { status: 500 });
    const dir = mkdtempSync(path.join(tmpdir(), "vla-gpu-"));
    const file = path.join(dir, "models.json");
    const stats = path.join(PROJECT_ROOT, "models/mock-openvla-7b/dataset_statistics.json");
    const remote = (id: string, metrics: string | null) => ({
      id,
      backend: {
        kind: "kserve-v2",
        model_name: "openvla",
        endpoints: ["http://127.0.0.1:1"],
        metrics_urls: [metrics],
      },
      action: { dim: 7, chunk: 1 },
      dataset_statistics: stats,
      default_unnorm_key: "bridge_orig",
    });
    writeFileSync(
      file,
      JSON.stringify({
        models: [
          remote("triton-good", `${good.url}/metrics`),
          remote("triton-bad", `${bad.url}/metrics`),
          remote("triton-none", null),
        ],
      }),
    );
    const t = await buildTestApp({
      env: { MODELS_CONFIG: file, MODELS_WARM_UP: "false", BACKEND_METRICS_INTERVAL_MS: "50" },
    });
    try {
      let caller: Principal = principal;
      t.app.platform.auth.useApiKeys({ verify: async () => caller });
      const auth = { "x-api-key": "vla_test" };
      const describeModel = async (id: string) => {
        const res = await t.app.inject({ method: "GET", url: `/v1/models/${id}`, headers: auth });
        expect(res.statusCode).toBe(200);
        return res.json() as { gpu?: { endpoint: string; gpus: { uuid: string; utilization_ratio?: number }[] }[] };
      };
      await vi.waitFor(async () => expect((await describeModel("triton-good")).gpu).toBeDefined(), {
        timeout: 10_000,
        interval: 50,
      });
      const body = await describeModel("triton-good");
      // A customer sees the endpoint's position, never the operator's host:port...
      expect(body.gpu?.[0]?.endpoint).toBe("endpoint-0");
      expect(JSON.stringify(body)).not.toContain("127.0.0.1");
      // ...a superuser sees where it is.
      caller = { ...principal, isSuperuser: true };
      expect((await describeModel("triton-good")).gpu?.[0]?.endpoint).toBe("127.0.0.1:1");
      caller = principal;
      expect(body.gpu?.[0]?.gpus.map((g) => [g.uuid, g.utilization_ratio])).toEqual([
        [GPU0, 0.62],
        [GPU1, 0],
      ]);
      await vi.waitFor(
        async () => {
          const text = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
          expect(text).toMatch(
            /vla_backend_metrics_scrape_failures_total\{model="triton-bad",endpoint="127.0.0.1:1"\} [1-9]/,
          );
        },
        { timeout: 10_000, interval: 50 },
      );
      const text = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(text).toContain(
        `vla_backend_gpu_utilization_ratio{model="triton-good",endpoint="127.0.0.1:1",gpu="${GPU0}"} 0.62`,
      );
      expect(text).not.toContain('vla_backend_gpu_utilization_ratio{model="triton-bad"');
      expect("gpu" in (await describeModel("triton-bad"))).toBe(false);
      expect("gpu" in (await describeModel("triton-none"))).toBe(false);
    } finally {
      await t.close();
    }
  });
});
