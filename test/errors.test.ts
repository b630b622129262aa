import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errors } from "../src/platform/errors.ts";
import { buildTestApp, type TestContext } from "./helpers/app.ts";

/** Probe routes exercising every failure path of the shared error handling. */
const probes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    "/_probe/echo",
    {
      schema: {
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 20 }), count: Type.Integer({ minimum: 0 }) },
          { additionalProperties: false },
        ),
        querystring: Type.Object({ verbose: Type.Optional(Type.Boolean()) }),
      },
    },
    async (request) => request.body,
  );
  app.get("/_probe/boom", async () => {
    throw new Error("secret internal detail: password=hunter2 at db.query");
  });
  app.get("/_probe/conflict", async () => {
    throw errors.conflict("That name is taken.");
  });
};

let t: TestContext;
beforeAll(async () => {
  t = await buildTestApp({ plugins: [probes], env: { BODY_LIMIT_BYTES: "2048", NOT_FOUND_PER_MINUTE: "5" } });
});
afterAll(async () => {
  await t.close();
});

function problem(res: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }) {
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.status).toBe(res.statusCode);
  expect(body.request_id).toBe(res.headers["x-request-id"]);
  return body;
}

describe("bad input", () => {
  it("malformed JSON -> 400 invalid_json", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo",
      headers: { "content-type": "application/json" },
      payload: '{"name": "a", ',
    });
    expect(res.statusCode).toBe(400);
    expect(problem(res).code).toBe("invalid_json");
  });

  it("empty JSON body -> 400 invalid_json", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo",
      headers: { "content-type": "application/json" },
      payload: "",
    });
    expect(res.statusCode).toBe(400);
    expect(problem(res).code).toBe("invalid_json");
  });

  it("wrong types and missing fields -> 422 with every field path", async () => {
    const res = await t.app.inject({ method: "POST", url: "/_probe/echo", payload: { count: "many", extra: 1 } });
    expect(res.statusCode).toBe(422);
    const body = problem(res);
    expect(body.code).toBe("validation_failed");
    const paths = (body.errors as { in: string; path: string }[]).map((e) => `${e.in}:${e.path}`);
    expect(paths).toEqual(expect.arrayContaining(["body:/name", "body:/count", "body:/extra"]));
  });

  it("bad query -> 400 invalid_request naming the parameter", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo?verbose=perhaps",
      payload: { name: "a", count: 1 },
    });
    expect(res.statusCode).toBe(400);
    const body = problem(res);
    expect(body.code).toBe("invalid_request");
    expect(body.errors).toEqual([expect.objectContaining({ in: "query", path: "/verbose" })]);
  });

  it("body over the limit -> 413 payload_too_large", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo",
      payload: { name: "x".repeat(5000), count: 1 },
    });
    expect(res.statusCode).toBe(413);
    expect(problem(res).code).toBe("payload_too_large");
  });

  it("unsupported content type -> 415", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo",
      headers: { "content-type": "application/xml" },
      payload: "<name>a</name>",
    });
    expect(res.statusCode).toBe(415);
    expect(problem(res).code).toBe("unsupported_media_type");
  });

  it("prototype poisoning is refused", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo",
      headers: { "content-type": "application/json" },
      payload: '{"name":"a","count":1,"__proto__":{"admin":true}}',
    });
    expect(res.statusCode).toBe(400);
    problem(res);
  });

  it("valid input passes", async () => {
    const res = await t.app.inject({ method: "POST", url: "/_probe/echo", payload: { name: "ok", count: 2 } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ name: "ok", count: 2 });
  });
});

describe("service failures", () => {
  it("500 hides internals but keeps the request id", async () => {
    const res = await t.app.inject({ method: "GET", url: "/_probe/boom", headers: { "x-request-id": "boom-1" } });
    expect(res.statusCode).toBe(500);
    const body = problem(res);
    expect(body.code).toBe("internal_error");
    expect(body.request_id).toBe("boom-1");
    expect(res.body).not.toContain("hunter2");
    expect(res.body).not.toContain("db.query");
  });

  it("expected failures keep their code and detail", async () => {
    const res = await t.app.inject({ method: "GET", url: "/_probe/conflict" });
    expect(res.statusCode).toBe(409);
    const body = problem(res);
    expect(body.code).toBe("conflict");
    expect(body.detail).toBe("That name is taken.");
  });
});

describe("404 scanning is rate limited per IP", () => {
  it("answers 429 with Retry-After after the per-minute allowance", async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof t.app.inject>> | undefined;
    for (let i = 0; i < 7; i++) {
      last = await t.app.inject({ method: "GET", url: `/scan/${i}`, remoteAddress: "203.0.113.9" });
      statuses.push(last.statusCode);
    }
    expect(statuses.slice(0, 5).every((s) => s === 404)).toBe(true);
    expect(statuses.slice(5)).toEqual([429, 429]);
    expect(Number(last?.headers["retry-after"])).toBeGreaterThan(0);
    expect(problem(last as NonNullable<typeof last>).code).toBe("rate_limited");
    // Another client is unaffected.
    const other = await t.app.inject({ method: "GET", url: "/scan/x", remoteAddress: "203.0.113.10" });
    expect(other.statusCode).toBe(404);
  });
});

describe("bodies are typed JSON", () => {
  it("does not coerce a number into a string or a string into a number", async () => {
    const res = await t.app.inject({ method: "POST", url: "/_probe/echo", payload: { name: 7, count: "3" } });
    expect(res.statusCode).toBe(422);
    const paths = (problem(res).errors as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["/name", "/count"]));
  });

  it("still coerces query parameters, which arrive as text", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/_probe/echo?verbose=true",
      payload: { name: "a", count: 1 },
    });
    expect(res.statusCode).toBe(200);
  });
});
