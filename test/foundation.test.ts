import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CATALOGUE } from "../src/platform/errors.ts";
import { buildTestApp, type TestContext } from "./helpers/app.ts";

let t: TestContext;
beforeAll(async () => {
  t = await buildTestApp();
  // A route that fails with an internal error, to check 500s hide internals.
  // Registered on a second app below, since the shared app is already ready.
});
afterAll(async () => {
  await t.close();
});

function expectProblem(res: { headers: Record<string, unknown>; json: () => unknown }, status: number, code: string) {
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.status).toBe(status);
  expect(body.code).toBe(code);
  expect(body.type).toBe(`${t.config.http.publicBaseUrl}/problems/${code}`);
  expect(typeof body.title).toBe("string");
  expect(body.request_id).toBe(res.headers["x-request-id"]);
  return body;
}

describe("errors as problem+json", () => {
  it("unknown route -> 404 route_not_found", async () => {
    const res = await t.app.inject({ method: "GET", url: "/definitely/not/here" });
    expect(res.statusCode).toBe(404);
    expectProblem(res, 404, "route_not_found");
  });

  it("wrong method -> 405 with Allow", async () => {
    const res = await t.app.inject({ method: "DELETE", url: "/health" });
    expect(res.statusCode).toBe(405);
    expectProblem(res, 405, "method_not_allowed");
    expect(res.headers.allow).toContain("GET");
  });

  it("every problem type URI resolves to its description", async () => {
    const res = await t.app.inject({ method: "GET", url: "/problems/method_not_allowed" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ code: "method_not_allowed", status: 405 });
    const list = await t.app.inject({ method: "GET", url: "/problems" });
    expect((list.json() as unknown[]).length).toBe(Object.keys(ERROR_CATALOGUE).length);
    const missing = await t.app.inject({ method: "GET", url: "/problems/no_such_code" });
    expectProblem(missing, 404, "not_found");
    const bad = await t.app.inject({ method: "GET", url: "/problems/NOT-VALID" });
    const body = expectProblem(bad, 400, "invalid_request");
    expect(body.errors).toEqual([expect.objectContaining({ in: "params", path: "/code" })]);
  });
});

describe("request ids", () => {
  it("mints one when absent", async () => {
    const res = await t.app.inject({ method: "GET", url: "/health/live" });
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("echoes a sane caller id and replaces an unsafe one", async () => {
    const ok = await t.app.inject({
      method: "GET",
      url: "/health/live",
      headers: { "x-request-id": "robot-7.frame-42" },
    });
    expect(ok.headers["x-request-id"]).toBe("robot-7.frame-42");
    const bad = await t.app.inject({
      method: "GET",
      url: "/health/live",
      headers: { "x-request-id": "evil\u0000id with spaces" },
    });
    expect(bad.headers["x-request-id"]).not.toContain(" ");
  });
});

describe("security headers and CORS", () => {
  it("sets the usual headers", async () => {
    const res = await t.app.inject({ method: "GET", url: "/health/live" });
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-security-policy"]).toContain("default-src 'none'");
    expect(res.headers["x-frame-options"]).toBeDefined();
  });

  it("sends helmet's full set on every kind of response, and /docs keeps its own CSP", async () => {
    const expected = {
      "content-security-policy":
        "default-src 'none';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'none';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-site",
      "origin-agent-cluster": "?1",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "x-dns-prefetch-control": "off",
      "x-download-options": "noopen",
      "x-frame-options": "SAMEORIGIN",
      "x-permitted-cross-domain-policies": "none",
      "x-xss-protection": "0",
    };
    for (const url of ["/health/live", "/no/such/route", "/v1/models"]) {
      const res = await t.app.inject({ method: "GET", url });
      expect(res.headers).toMatchObject(expected);
      // HSTS only in production.
      expect(res.headers["strict-transport-security"]).toBeUndefined();
    }
    const docs = await t.app.inject({ method: "GET", url: "/docs" });
    expect(docs.statusCode).toBe(200);
    expect(docs.headers["content-security-policy"]).toContain("default-src 'self'");
  });

  it("allows only configured origins", async () => {
    const ctx = await buildTestApp({ env: { CORS_ORIGINS: '["https://app.example.com"]' } });
    try {
      const allowed = await ctx.app.inject({
        method: "OPTIONS",
        url: "/health",
        headers: { origin: "https://app.example.com", "access-control-request-method": "GET" },
      });
      expect(allowed.headers["access-control-allow-origin"]).toBe("https://app.example.com");
      const denied = await ctx.app.inject({
        method: "GET",
        url: "/health/live",
        headers: { origin: "https://evil.example.com" },
      });
      expect(denied.headers["access-control-allow-origin"]).toBeUndefined();
      // Browsers may read the rate-limit, timing and /act problem headers.
      const simple = await ctx.app.inject({
        method: "GET",
        url: "/health/live",
        headers: { origin: "https://app.example.com" },
      });
      const exposed = String(simple.headers["access-control-expose-headers"]).split(/,\s*/);
      for (const h of ["X-Request-Id", "RateLimit", "RateLimit-Policy", "Retry-After", "X-Problem-Code"]) {
        expect(exposed).toContain(h);
      }
    } finally {
      await ctx.close();
    }
  });
});

describe("health", () => {
  it("reports ok with per-component latency", async () => {
    const res = await t.app.inject({ method: "GET", url: "/health" });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.status).toBe("ok");
    expect(body.checks.database.status).toBe("ok");
    expect(typeof body.checks.database.latency_ms).toBe("number");
    expect(["disabled", "ok"]).toContain(body.checks.redis.status);
  });

  it("liveness answers without checks", async () => {
    const res = await t.app.inject({ method: "GET", url: "/health/live" });
    expect(res.json()).toEqual({ status: "ok" });
  });

  it("answers 503 down when the database is gone", async () => {
    const ctx = await buildTestApp();
    try {
      await ctx.database.close();
      const res = await ctx.app.inject({ method: "GET", url: "/health" });
      expect(res.statusCode).toBe(503);
      expect(res.json().status).toBe("down");
      expect(res.json().checks.database.status).toBe("down");
      const live = await ctx.app.inject({ method: "GET", url: "/health/live" });
      expect(live.statusCode).toBe(200);
    } finally {
      await ctx.close();
    }
  });

  it("reports degraded, not down, when a non-critical component fails", async () => {
    const ctx = await buildTestApp();
    try {
      ctx.app.platform.health.register("email", async () => ({ status: "down", detail: "smtp refused" }));
      const res = await ctx.app.inject({ method: "GET", url: "/health" });
      expect(res.statusCode).toBe(200);
      expect(res.json().status).toBe("degraded");
    } finally {
      await ctx.close();
    }
  });
});

describe("metrics", () => {
  it("exposes Prometheus text with app, http and process metrics", async () => {
    await t.app.inject({ method: "GET", url: "/health/live" });
    await t.app.inject({ method: "GET", url: "/nope-for-metrics" });
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain/);
    const text = res.body;
    expect(text).toContain(`vla_app_info{version="${t.config.version}",environment="test"} 1`);
    expect(text).toMatch(/vla_uptime_seconds \d/);
    expect(text).toContain('vla_http_requests_total{method="GET",route="/health/live",status="200"}');
    expect(text).toContain('vla_http_request_errors_total{method="GET",route="unmatched",status="404"}');
    expect(text).toContain("vla_http_request_duration_seconds_bucket");
    expect(text).toContain("process_resident_memory_bytes");
  });
});

describe("OpenAPI", () => {
  it("serves a 3.1 document where every route declares responses", async () => {
    const res = await t.app.inject({ method: "GET", url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toBe("3.1.0");
    const paths = doc.paths as Record<
      string,
      Record<string, { responses?: Record<string, unknown>; tags?: string[]; summary?: string }>
    >;
    expect(Object.keys(paths)).toEqual(
      expect.arrayContaining(["/health", "/health/live", "/metrics", "/problems/{code}"]),
    );
    for (const [p, ops] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.responses, `${method} ${p}`).toBeDefined();
        expect(
          // WebSocket upgrades succeed with 101 Switching Protocols.
          Object.keys(op.responses ?? {}).some((k) => k.startsWith("2") || k === "101"),
          `${method} ${p} 2xx`,
        ).toBe(true);
        expect(
          Object.keys(op.responses ?? {}).some((k) => k.startsWith("4")),
          `${method} ${p} 4xx`,
        ).toBe(true);
        expect(op.tags?.length, `${method} ${p} tags`).toBeGreaterThan(0);
        expect(op.summary, `${method} ${p} summary`).toBeTruthy();
      }
    }
  });

  it("renders interactive docs at /docs", async () => {
    const res = await t.app.inject({ method: "GET", url: "/docs/" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/text\/html/);
  });
});

describe("logging", () => {
  it("binds the request id to log lines and redacts secrets", async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const ctx = await buildTestApp({ env: { LOG_LEVEL: "info" }, logStream: stream });
    try {
      ctx.app.log.info({ headers: { authorization: "Bearer secret-jwt" }, password: "hunter22" }, "probe");
      await ctx.app.inject({
        method: "GET",
        url: "/health/live",
        headers: { "x-request-id": "req-log-1", authorization: "Bearer vla_live_secret", "x-api-key": "vla_live_x" },
      });
      const all = lines.join("");
      expect(all).toContain('"request_id":"req-log-1"');
      expect(all).not.toContain("secret-jwt");
      expect(all).not.toContain("hunter22");
      expect(all).not.toContain("vla_live_secret");
    } finally {
      await ctx.close();
    }
  });
});
