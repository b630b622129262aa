import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../../src/platform/auth.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { jpeg } from "./helpers.ts";

const principal = (scopes: Principal["scopes"]): Principal => ({
  kind: "api_key",
  customerId: "cust_1",
  userId: null,
  apiKeyId: "key_1",
  scopes,
  isSuperuser: false,
  tier: "free",
});

let t: TestContext;
beforeAll(async () => {
  t = await buildTestApp();
  // Stand-in key verification until the api-keys module lands: the key text names the scopes.
  t.app.platform.auth.useApiKeys({
    verify: async (c) => principal(c.kind === "api_key" && c.key.endsWith("_admin") ? ["admin"] : ["inference"]),
  });
});
afterAll(async () => {
  await t.close();
});

const auth = { "x-api-key": "vla_test_inference" };

describe("GET /v1/models", () => {
  it("requires a credential with the inference scope", async () => {
    expect((await t.app.inject({ method: "GET", url: "/v1/models" })).statusCode).toBe(401);
    const res = await t.app.inject({ method: "GET", url: "/v1/models", headers: { "x-api-key": "vla_test_admin" } });
    expect(res.statusCode).toBe(403);
  });

  it("lists the embedded models with their spec and live stats", async () => {
    await t.app.platform.engine.infer({
      model: "mock-openvla-7b",
      imageBytes: await jpeg(64, 64, 1),
      instruction: "pick",
      unnormKey: "bridge_orig",
      customerId: "cust_1",
    });
    const res = await t.app.inject({ method: "GET", url: "/v1/models", headers: auth });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { data: { id: string; stats: { requests: number } }[]; default_model: string };
    expect(body.default_model).toBe("mock-openvla-7b");
    expect(body.data.map((m) => m.id)).toEqual([
      "mock-openvla-7b",
      "demo-vla-tiny",
      "mock-pi0",
      "tabletop-policy",
      "tabletop-policy-chunk",
    ]);
    expect(body.data[0]?.stats.requests).toBe(1);
  });

  it("describes one model; unknown ids are 404 unknown_model", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/models/demo-vla-tiny", headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      id: "demo-vla-tiny",
      backend: "onnx",
      action: { dim: 7, chunk: 1 },
      unnorm_keys: ["bridge_orig"],
      default_unnorm_key: "bridge_orig",
    });
    const missing = await t.app.inject({ method: "GET", url: "/v1/models/nope", headers: auth });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({
      code: "unknown_model",
      available_models: ["mock-openvla-7b", "demo-vla-tiny", "mock-pi0", "tabletop-policy", "tabletop-policy-chunk"],
    });
  });

  it("reports models and queue in /health and engine metrics in /metrics", async () => {
    const health = (await t.app.inject({ method: "GET", url: "/health" })).json() as {
      checks: Record<string, { status: string }>;
    };
    expect(health.checks.models?.status).toMatch(/ok|degraded/);
    expect(health.checks.queue?.status).toBe("ok");
    const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toContain("vla_model_queue_depth");
    expect(metrics).toContain('vla_model_batch_size_count{model="mock-openvla-7b"} 1');
    expect(metrics).toContain('vla_inference_requests_total{model="mock-openvla-7b",backend="mock",outcome="ok"} 1');
    expect(metrics).toContain('vla_image_decodes_total{path="sharp"} 1');
  });
});
