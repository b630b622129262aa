import multipart from "@fastify/multipart";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { decodePageCursor, pageOf } from "../../platform/db/page-cursor.ts";
import type { InferenceLogRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import { sendProblem } from "../../platform/http/error-handler.ts";
import type { Platform } from "../../platform/platform.ts";
import type { RobotState } from "../safety/types.ts";
import {
  HistoryPageSchema,
  HistoryQuery,
  InferenceIdParams,
  InferenceJsonBody,
  InferenceLogSchema,
  InferenceMultipartBody,
  InferenceResponseSchema,
  RobotStateSchema,
} from "./inference.schemas.ts";
import {
  callContext,
  failureInfoOf,
  imageInput,
  markLogged,
  recordRouteFailure,
  serverTiming,
} from "./inference-http.ts";
import type { InferenceLogsRepo } from "./inference-logs.repo.ts";
import type { InferenceRunner } from "./inference-runner.ts";
import { type MultipartLimits, readMultipartBody } from "./multipart-body.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

export interface InferenceRouteOptions {
  readonly platform: Platform;
  readonly runner: InferenceRunner;
  readonly repo: InferenceLogsRepo;
  /** The history listing's repo: on the read replica when configured (`repo` stays on the primary). */
  readonly historyRepo?: InferenceLogsRepo;
}

function toApi(r: InferenceLogRow) {
  return {
    id: r.id,
    created_at: r.createdAt.toISOString(),
    source: r.source as "rest" | "act" | "stream" | "openpi",
    status: r.status as "ok" | "error",
    error_code: r.errorCode,
    model: r.model,
    backend: r.backend,
    robot_id: r.robotId,
    api_key_id: r.apiKeyId,
    instruction: r.instruction,
    instruction_sha256: r.instructionSha256,
    image_sha256: r.imageSha256,
    action: r.action,
    action_chunk: r.actionChunk,
    unnorm_key: r.unnormKey,
    safety_status: r.safetyStatus,
    timing: { preprocess_ms: r.preprocessMs, queue_ms: r.queueMs, model_ms: r.modelMs, total_ms: r.totalMs },
    experiment: r.experimentId === null ? null : { id: r.experimentId, variant: r.variant ?? "" },
  };
}

/** Checks multipart robot_state (a JSON text) against the same rules as the JSON body. */
function parseRobotState(text: string): RobotState {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw errors.validation([{ in: "body", path: "/robot_state", message: "must be a JSON object" }]);
  }
  const fail = (message: string) => errors.validation([{ in: "body", path: "/robot_state", message }]);
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw fail("must be a JSON object");
  const o = v as Record<string, unknown>;
  const allowed = Object.keys(RobotStateSchema.properties);
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw fail(`has an unknown member ${k}`);
  const nums = (a: unknown, min: number, max: number) =>
    Array.isArray(a) &&
    a.length >= min &&
    a.length <= max &&
    a.every((x) => typeof x === "number" && Number.isFinite(x));
  if (!nums(o.ee_position, 3, 3)) throw fail("ee_position must be 3 finite numbers");
  if (o.ee_orientation !== undefined && !nums(o.ee_orientation, 3, 4))
    throw fail("ee_orientation must be 3 or 4 numbers");
  if (o.gripper !== undefined && !(typeof o.gripper === "number" && o.gripper >= 0 && o.gripper <= 1)) {
    throw fail("gripper must be a number in [0, 1]");
  }
  return o as RobotState;
}

/** POST /v1/inference, GET /v1/inference/history, GET /v1/inference/{id}. */
export const inferenceRoutes: FastifyPluginAsyncTypebox<InferenceRouteOptions> = async (
  app,
  { platform, runner, repo, historyRepo = repo },
) => {
  const config = platform.config;
  const requireInference = platform.auth.require({ scopes: ["inference"] });
  const meter = platform.limits.meter();

  const multipartLimits: MultipartLimits = {
    fileSize: config.inference.multipartMaxFileBytes,
    files: 1,
    fields: 10,
    parts: 11,
  };
  // The body is read by readMultipartBody (below), not by the plugin's attachFieldsToBody, so
  // a malformed body maps onto the catalogue.
  await app.register(multipart, { limits: { ...multipartLimits, fieldSize: 16 * 1024, fieldNameSize: 64 } });

  app.post(
    "/v1/inference",
    {
      // Authenticate and meter before the body is read: a stranger's 12 MB upload costs nothing.
      onRequest: [requireInference, meter],
      preValidation: async (request) => {
        if (request.isMultipart()) request.body = await readMultipartBody(request, multipartLimits);
      },
      bodyLimit: config.http.inferenceBodyLimitBytes,
      schema: {
        tags: ["inference"],
        summary: "Run a policy on one camera frame",
        description:
          "Send a camera frame and an instruction; get the robot action. The image is base64 JPEG/PNG/WebP, " +
          "a json_numpy uint8 HxWx3 array, or (multipart/form-data) an `image` file part with the other members as " +
          "fields (`robot_state` as JSON text). Answers carry `Server-Timing` and the RateLimit headers. " +
          "Every inference, failed ones included (not 401/403/429), is logged; see GET /v1/inference/history.",
        security: SECURITY,
        consumes: ["application/json", "multipart/form-data"],
        body: {
          content: {
            "application/json": { schema: InferenceJsonBody },
            "multipart/form-data": { schema: InferenceMultipartBody },
          },
        },
        response: {
          200: InferenceResponseSchema,
          "4XX": {
            $ref: "Problem#",
            description: "Problem: invalid body, image, model or unnorm_key; auth; 429 quota.",
          },
          "5XX": {
            $ref: "Problem#",
            description: "Problem: model overloaded (503), timed out (504), invalid output (502).",
          },
        },
      },
      errorHandler: (error, request, reply) => {
        const appError = recordRouteFailure(runner, request, reply, error, "rest", failureInfoOf);
        return sendProblem(reply, request, appError, config.http.publicBaseUrl);
      },
    },
    async (request, reply) => {
      // No body and no content type: Fastify selects no per-type schema, so nothing validated it.
      if (request.body === undefined || request.body === null || typeof request.body !== "object") {
        throw errors.validation([
          { in: "body", path: "", message: "is required: application/json or multipart/form-data" },
        ]);
      }
      const body = request.body as Record<string, unknown>;
      const robotState =
        typeof body.robot_state === "string"
          ? parseRobotState(body.robot_state)
          : (body.robot_state as RobotState | undefined);
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      if (body.robot_id === undefined && (principal.keyDefaults?.robotId ?? null) === null) {
        throw errors.validation([
          { in: "body", path: "/robot_id", message: "is required (this API key is not bound to a robot)" },
        ]);
      }
      // The key's defaults (and its robot binding) are applied by the runner.
      const input = {
        model: body.model as string | undefined,
        unnormKey: body.unnorm_key as string | undefined,
        instruction: body.instruction as string,
        robotId: body.robot_id as string | undefined,
        image: imageInput(body.image, platform),
        robotState,
      };
      // The runner logs the outcome, success or failure.
      markLogged(request);
      const out = await runner.run(callContext(request, reply, "rest"), input);
      const { id, result, totalMs } = out;
      const timing = { ...result.timing, total_ms: totalMs };
      reply.header("Server-Timing", serverTiming(timing));
      return {
        inference_id: id,
        model: result.model,
        backend: result.backend,
        action: out.action,
        ...(out.actionChunk === undefined ? {} : { action_chunk: out.actionChunk }),
        unnorm_key: result.unnormKey,
        safety: out.safety,
        timing,
        ...(out.experiment === undefined ? {} : { experiment: out.experiment }),
      };
    },
  );

  app.get(
    "/v1/inference/history",
    {
      onRequest: requireInference,
      schema: {
        tags: ["inference"],
        summary: "Inference history",
        description:
          "Your inferences, newest first, with cursor pagination (`limit` default 50, max 200; pass `next_cursor` " +
          "as `cursor`). Filters: robot_id, model, status, source, and a created_at range [from, to). Rows appear " +
          "within about a second: logs are written in batches off the request path.",
        security: SECURITY,
        querystring: HistoryQuery,
        response: { 200: HistoryPageSchema },
      },
    },
    async (request) => {
      const q = request.query;
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const cursor = q.cursor === undefined ? undefined : decodePageCursor(q.cursor);
      const rows = await historyRepo.list(
        principal.customerId,
        {
          robotId: q.robot_id,
          model: q.model,
          status: q.status,
          source: q.source,
          from: q.from === undefined ? undefined : new Date(q.from),
          to: q.to === undefined ? undefined : new Date(q.to),
        },
        cursor,
        q.limit,
      );
      const { page, nextCursor } = pageOf(rows, q.limit);
      return { data: page.map(toApi), next_cursor: nextCursor };
    },
  );

  app.get(
    "/v1/inference/:id",
    {
      onRequest: requireInference,
      schema: {
        tags: ["inference"],
        summary: "One inference",
        description: "One logged inference of yours; 404 `not_found` for ids of other customers.",
        security: SECURITY,
        params: InferenceIdParams,
        response: { 200: InferenceLogSchema },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const row = await repo.get(principal.customerId, request.params.id);
      if (row === undefined) throw errors.notFound("Inference");
      return toApi(row);
    },
  );
};
