import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CATALOGUE, type ErrorCode } from "../../src/platform/errors.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

/**
 * The `/v1/models` routes declare their error responses as problem+json with examples: each
 * status a route answers, with an example per code whose catalogue status is that status.
 * (test/docs/openapi-examples.test.ts checks every example against the Problem schema.)
 */

interface Media {
  schema?: { $ref?: string };
  examples?: Record<string, { value: { code: ErrorCode; status: number } }>;
}
type Responses = Record<string, { content?: Record<string, Media> }>;

let t: TestContext;
let paths: Record<string, Record<string, { responses: Responses }>>;
beforeAll(async () => {
  t = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
  const res = await t.app.inject({ method: "GET", url: "/openapi.json" });
  expect(res.statusCode).toBe(200);
  paths = (res.json() as { paths: typeof paths }).paths;
});
afterAll(async () => {
  await t?.close();
});

const EXPECTED: [string, string, Record<string, ErrorCode[]>][] = [
  ["/v1/models", "get", { 401: ["unauthorized"], 403: ["forbidden"] }],
  [
    "/v1/models",
    "post",
    {
      401: ["unauthorized"],
      403: ["forbidden", "enterprise_required"],
      409: ["model_id_taken", "model_limit_reached"],
      422: ["validation_failed", "endpoint_not_allowed"],
    },
  ],
  ["/v1/models/{model_id}", "get", { 401: ["unauthorized"], 403: ["forbidden"], 404: ["unknown_model"] }],
  [
    "/v1/models/{model_id}",
    "put",
    {
      401: ["unauthorized"],
      403: ["forbidden", "enterprise_required"],
      404: ["unknown_model"],
      422: ["validation_failed", "endpoint_not_allowed"],
    },
  ],
  ["/v1/models/{model_id}", "delete", { 401: ["unauthorized"], 403: ["forbidden"], 404: ["unknown_model"] }],
];

describe("OpenAPI: the /v1/models routes' problem responses", () => {
  it.each(EXPECTED)("%s %s declares each error status with problem+json examples", (path, method, statuses) => {
    const responses = paths[path]?.[method]?.responses ?? {};
    for (const [status, codes] of Object.entries(statuses)) {
      const media = responses[status]?.content?.["application/problem+json"];
      expect(media?.schema?.$ref, `${method} ${path} ${status}`).toBe("#/components/schemas/Problem");
      const examples = Object.values(media?.examples ?? {}).map((e) => e.value);
      expect(examples.map((e) => e.code)).toEqual(codes);
      for (const e of examples) {
        expect(e.status).toBe(Number(status));
        expect(ERROR_CATALOGUE[e.code].status).toBe(Number(status));
      }
    }
  });
});
