import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { seedCustomer, seedKey } from "../helpers/limits.ts";

/**
 * Credentials are checked before the body or the query is read: every route that declares a
 * security requirement answers a stranger 401 (and a key without the scope 403) even when the
 * body is malformed JSON and every parameter is invalid, so validation details never reach an
 * unauthenticated caller and its upload is never parsed.
 */
const WEBSOCKET_PATHS = ["/v1/stream", "/v1/openpi", "/"];

let t: TestContext;
let ops: { method: string; path: string; url: string }[];
beforeAll(async () => {
  t = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
  const doc = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json() as {
    paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>>;
  };
  ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const security = op.security ?? [];
      // No requirement, or an anonymous alternative ({}): nothing to refuse.
      if (security.length === 0 || security.some((s) => Object.keys(s).length === 0)) continue;
      // Invalid path parameters too: "{id}" becomes a value no schema accepts.
      ops.push({ method: method.toUpperCase(), path, url: path.replace(/\{[^}]+\}/g, "%20not%20an%20id%20") });
    }
  }
});
afterAll(async () => {
  await t?.close();
});

const badRequest = (method: string, url: string, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: method as "POST",
    url: `${url}?limit=abc&cursor=%25&from=yesterday`,
    headers: { "content-type": "application/json", ...headers },
    ...(method === "GET" || method === "HEAD" ? {} : { payload: '{"truncated": ' }),
  });

describe("authentication before the body", () => {
  it("finds the secured routes, writes included", () => {
    const names = ops.map((o) => `${o.method} ${o.path}`);
    for (const n of ["POST /v1/models", "POST /v1/experiments", "POST /v1/feedback/correction", "POST /v1/inference"]) {
      expect(names).toContain(n);
    }
    expect(ops.length).toBeGreaterThan(50);
  });

  it("a stranger with a malformed body and invalid parameters gets 401 unauthorized on every secured route", async () => {
    const wrong: string[] = [];
    for (const o of ops) {
      // WebSocket endpoints authenticate the upgrade (and its first message): test/streaming.
      if (o.method === "GET" && WEBSOCKET_PATHS.includes(o.path)) continue;
      const res = await badRequest(o.method, o.url);
      // /act answers stock OpenVLA clients the JSON string "error", the code in a header.
      const code =
        res.statusCode !== 401
          ? undefined
          : o.path === "/act"
            ? res.headers["x-problem-code"]
            : (res.json() as { code?: string }).code;
      if (res.statusCode !== 401 || code !== "unauthorized")
        wrong.push(`${o.method} ${o.path}: ${res.statusCode} ${res.body.slice(0, 120)}`);
    }
    expect(wrong).toEqual([]);
  });

  it("a key without the route's scope gets 403 before its malformed body is looked at", async () => {
    const { key } = await seedKey(t.database, await seedCustomer(t.database, { tier: "enterprise" }));
    for (const [method, url] of [
      ["POST", "/v1/models"],
      ["PUT", "/v1/models/x"],
      ["POST", "/v1/experiments"],
      ["POST", "/v1/api-keys"],
      ["PUT", "/v1/robots/arm-1/safety-profile"],
    ] as const) {
      const res = await badRequest(method, url, { "x-api-key": key });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(403);
      expect((res.json() as { code: string }).code).toBe("forbidden");
    }
  });

  it("with the scope, the same malformed body is a 400 (it was authentication that refused it)", async () => {
    const customerId = await seedCustomer(t.database, { tier: "enterprise" });
    const { key } = await seedKey(t.database, customerId, { scopes: ["inference", "admin"] });
    const res = await badRequest("POST", "/v1/experiments", { "x-api-key": key });
    expect(res.statusCode, res.body).toBe(400);
  });
});
