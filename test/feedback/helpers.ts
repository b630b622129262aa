import { randomUUID } from "node:crypto";
import { expect } from "vitest";
import type { InferenceLogEntry } from "../../src/modules/inference/inference-logs.repo.ts";
import { InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";

export { owner, xKey } from "../helpers/limits.ts";
export { flushLogs, jpeg, newKey } from "../inference/helpers.ts";

export type Json = Record<string, unknown>;
export interface Res {
  statusCode: number;
  body: string;
  headers: Record<string, unknown>;
  json(): unknown;
}

export async function buildFeedbackApp(env: Record<string, string> = {}): Promise<InferenceTestContext> {
  return buildInferenceApp(env);
}

export function expectProblem(res: Res, status: number, code: string): Json {
  expect(res.statusCode, res.body).toBe(status);
  expect(String(res.headers["content-type"])).toMatch(/^application\/problem\+json/);
  const body = res.json() as Json;
  expect(body.code).toBe(code);
  return body;
}

/** Writes an inference log row directly (known action values, chosen time: the app's clock, else now). */
export async function seedInference(
  t: { readonly database: Database; readonly clock?: { now(): number } },
  customerId: string,
  over: Partial<InferenceLogEntry> = {},
): Promise<string> {
  const id = over.id ?? randomUUID();
  const row: InferenceLogEntry = {
    id,
    createdAt: new Date(t.clock?.now() ?? Date.now()).toISOString(),
    customerId,
    apiKeyId: null,
    userId: null,
    model: "mock-openvla-7b",
    backend: "mock",
    robotId: "arm-1",
    instruction: "pick",
    instructionSha256: null,
    imageSha256: null,
    action: [0, 0, 0, 0, 0, 0, 0],
    actionChunk: null,
    unnormKey: "bridge_orig",
    status: "ok",
    errorCode: null,
    preprocessMs: 1,
    queueMs: 0,
    modelMs: 1,
    totalMs: 2,
    source: "rest",
    safetyStatus: "pass",
    ...over,
  };
  await new InferenceLogsRepo(t.database.db).insertMany([row]);
  return id;
}

export function post(
  t: InferenceTestContext,
  type: string,
  headers: Record<string, string>,
  payload: unknown,
  extra: Record<string, string> = {},
) {
  return t.app.inject({
    method: "POST",
    url: `/v1/feedback/${type}`,
    headers: { ...headers, ...extra },
    payload: payload as Json,
  });
}

/** Raw JSON text (NaN, 1e309 and other things JSON.stringify cannot write). */
export function postRaw(t: InferenceTestContext, type: string, headers: Record<string, string>, text: string) {
  return t.app.inject({
    method: "POST",
    url: `/v1/feedback/${type}`,
    headers: { ...headers, "content-type": "application/json" },
    payload: text,
  });
}

export { newKey as newCustomer };
