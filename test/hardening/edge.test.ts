import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, type InferenceTestContext, jpeg } from "../inference/helpers.ts";

/**
 * Bad input at the HTTP edge: every case answers a 4xx problem document (never a 500), and no
 * text PostgreSQL cannot store (U+0000) gets past the parsers.
 */

let t: InferenceTestContext;
let img: string;
let jpegBytes: Buffer;
beforeAll(async () => {
  t = await buildInferenceApp();
  jpegBytes = await jpeg(64, 64, 1);
  img = jpegBytes.toString("base64");
});
afterAll(async () => {
  await t?.close();
});

type Res = Awaited<ReturnType<InferenceTestContext["app"]["inject"]>>;

function problem(res: Res, status: number, code: string): Record<string, unknown> {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Record<string, unknown>;
  expect(body.code, res.body).toBe(code);
  return body;
}

const ok = { instruction: "pick up the red block", robot_id: "arm-1", unnorm_key: "bridge_orig" };
const owner = () => ({ authorization: `Bearer owner:${t.customerId}` });

const get = (url: string, headers: Record<string, string> = { "x-api-key": t.key }) =>
  t.app.inject({ method: "GET", url, headers });

const postRaw = (url: string, payload: string | Buffer, headers: Record<string, string>) =>
  t.app.inject({ method: "POST", url, headers: { "x-api-key": t.key, ...headers }, payload });

describe("fields with a fixed set of values list the allowed values", () => {
  it("history status", async () => {
    const p = problem(await get("/v1/inference/history?status=bogus"), 400, "invalid_request");
    expect(p.errors).toEqual([{ in: "query", path: "/status", message: "must be one of: ok, error" }]);
  });

  it("grant_type", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "grant_type=client_credentials&username=a%40b.c&password=x",
    });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([{ in: "body", path: "/grant_type", message: "must be password" }]);
  });

  it("key scopes", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/api-keys",
      headers: { ...owner(), "content-type": "application/json" },
      payload: { name: "k", scopes: ["inference", "root"] },
    });
    const p = problem(res, 422, "validation_failed");
    expect(p.errors).toEqual([{ in: "body", path: "/scopes/1", message: "must be one of: inference, admin" }]);
  });
});
