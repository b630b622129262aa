import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from "fastify";
import type { TSchema } from "typebox";
import { decodePageCursor, encodePageCursor } from "../../platform/db/page-cursor.ts";
import { errors } from "../../platform/errors.ts";
import { WindowCounter } from "../../platform/http/window-counter.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  CorrectionBody,
  FailureBody,
  FeedbackPageSchema,
  FeedbackResponseSchema,
  type FeedbackType,
  IdempotencyHeaders,
  ListQuery,
  MAX_STATS_GROUPS,
  SafetyBody,
  StatsQuery,
  StatsSchema,
  SuccessBody,
} from "./feedback.schemas.ts";
import type { FeedbackBody, FeedbackService } from "./feedback.service.ts";

export interface FeedbackRouteOptions {
  readonly platform: Platform;
  readonly service: FeedbackService;
}

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });

const time = (v: string | undefined) => (v === undefined ? undefined : new Date(v));

function range(q: { from?: string | undefined; to?: string | undefined }) {
  const from = time(q.from);
  const to = time(q.to);
  if (from !== undefined && to !== undefined && !(from.getTime() < to.getTime())) {
    throw errors.invalidRequest([{ in: "query", path: "/from", message: "must be before to" }]);
  }
  return { from, to };
}

interface PostSpec {
  readonly type: FeedbackType;
  readonly body: TSchema;
  readonly summary: string;
  readonly description: string;
}

const POSTS: readonly PostSpec[] = [
  {
    type: "success",
    body: SuccessBody,
    summary: "Rate how well an inference did its task",
    description: "How well the robot did what it was told after this inference: a rating 1-5 and an optional comment.",
  },
  {
    type: "safety",
    body: SafetyBody,
    summary: "Rate how safe an inference's motion was",
    description:
      "How safe the motion looked (1 dangerous to 5 safe), optionally what was seen (collision, near_miss, " +
      "unexpected_motion, workspace_exit, other) and a comment.",
  },
  {
    type: "correction",
    body: CorrectionBody,
    summary: "Send the action the robot should have taken",
    description:
      "The corrected 7-DoF action (`corrected_action`), or for chunking models the corrected chunk " +
      "(`corrected_chunk`, as many steps as the inference's chunk). It is stored beside the action the service " +
      "returned, with the L2 difference per part: translation (dims 0-2), rotation (3-5), gripper (6); for a " +
      "chunk the mean over steps. Values must be finite and within +-10. An inference that failed (no action) is " +
      "409 `inference_without_action`.",
  },
  {
    type: "failure",
    body: FailureBody,
    summary: "Report a failed execution",
    description:
      "What went wrong after this inference: failure_type (grasp_failed, wrong_object, timeout, dropped_object, " +
      "collision, other), a description (required, up to 2000 characters) and an optional severity.",
  },
];

const COMMON =
  " The inference must be yours (another customer's or an unknown id is 404) and at most FEEDBACK_MAX_AGE_DAYS " +
  "(default 90) days old; a robot-bound API key reports only on its robot's inferences (403 `robot_mismatch`). " +
  "Feedback sent right after the inference is fine: logs still buffered are written first. With an " +
  "`Idempotency-Key` header a retry returns the first result (200 instead of 201, header `Idempotent-Replayed: " +
  "true`); the same key with another body is 422 `idempotency_key_reused`. Feedback does not count against the " +
  "inference quota; it has its own per-minute cap (429 `rate_limited`).";

/**
 * `POST /v1/feedback/{success,safety,correction,failure}`, `GET /v1/feedback`,
 * `GET /v1/feedback/stats`. Owner or member sessions and API keys with the `inference` scope.
 */
export const feedbackRoutes: FastifyPluginAsyncTypebox<FeedbackRouteOptions> = async (app, { platform, service }) => {
  const config = platform.config.feedback;
  const auth = platform.auth.require({ scopes: ["inference"] });
  // Not the inference quota: a robot reporting outcomes must not eat its own inference budget.
  // A per-customer cap per instance stops floods instead.
  const perCustomer = new WindowCounter(60_000);
  platform.lifecycle.onClose("feedback-throttle", () => perCustomer.close());
  const throttle: preHandlerAsyncHookHandler = async (request: FastifyRequest, _reply: FastifyReply) => {
    const principal = request.principal;
    if (principal === null) throw errors.unauthorized();
    const hit = perCustomer.hit(principal.customerId, platform.now());
    if (hit.count > config.perMinute) {
      throw errors.rateLimited(
        hit.resetInMs / 1000,
        `Too many feedback requests; at most ${config.perMinute} per minute per customer.`,
      );
    }
  };

  for (const spec of POSTS) {
    app.post(
      `/v1/feedback/${spec.type}`,
      {
        onRequest: auth,
        preHandler: throttle,
        schema: {
          tags: ["feedback"],
          summary: spec.summary,
          description: spec.description + COMMON,
          security: SECURITY,
          headers: IdempotencyHeaders,
          body: spec.body,
          response: {
            200: { ...FeedbackResponseSchema, description: "A retry with the same Idempotency-Key: the first result." },
            201: { ...FeedbackResponseSchema, description: "Stored." },
            "4XX": PROBLEM(
              "Problem: invalid body (400/422), auth (401/403), unknown inference (404), no action to correct " +
                "(409), idempotency key reused (422), too many requests (429).",
            ),
          },
        },
      },
      async (request, reply) => {
        const principal = request.principal;
        if (principal === null) throw errors.unauthorized();
        const key = (request.headers as { "idempotency-key"?: string })["idempotency-key"];
        const out = await service.submit(
          {
            customerId: principal.customerId,
            apiKeyId: principal.apiKeyId,
            userId: principal.userId,
            robotId: principal.keyDefaults?.robotId ?? null,
          },
          spec.type,
          request.body as FeedbackBody,
          key,
        );
        if (out.replayed) reply.header("Idempotent-Replayed", "true");
        reply.code(out.replayed ? 200 : 201);
        return out.view;
      },
    );
  }

  app.get(
    "/v1/feedback",
    {
      onRequest: auth,
      preHandler: throttle,
      schema: {
        tags: ["feedback"],
        summary: "Your feedback",
        description:
          "Feedback records, newest first, with cursor pagination (`limit` default 50, max 200; pass `next_cursor` " +
          "as `cursor`). Filters: type, robot_id, model, inference_id and a created_at range [from, to).",
        security: SECURITY,
        querystring: ListQuery,
        response: { 200: FeedbackPageSchema },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const q = request.query;
      const cursor = q.cursor === undefined ? undefined : decodePageCursor(q.cursor);
      const page = await service.list(
        principal.customerId,
        {
          type: q.type as FeedbackType | undefined,
          robotId: q.robot_id,
          model: q.model,
          inferenceId: q.inference_id,
          ...range(q),
        },
        cursor,
        q.limit,
      );
      return { data: page.data, next_cursor: page.next === null ? null : encodePageCursor(page.next) };
    },
  );

  app.get(
    "/v1/feedback/stats",
    {
      onRequest: auth,
      preHandler: throttle,
      schema: {
        tags: ["feedback"],
        summary: "Feedback statistics",
        description:
          "Over [from, to) (default: everything stored), optionally for one robot or model: counts per type, " +
          "mean and distribution of success and safety ratings, observed issues, correction error per part " +
          "(mean, p50, p95, max) and failure types and severities; overall, per model and per robot " +
          `(largest ${MAX_STATS_GROUPS} groups each).`,
        security: SECURITY,
        querystring: StatsQuery,
        response: { 200: StatsSchema },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const q = request.query;
      const { from, to } = range(q);
      const s = await service.stats(
        principal.customerId,
        { robotId: q.robot_id, model: q.model, from, to },
        MAX_STATS_GROUPS,
      );
      return {
        from: from?.toISOString() ?? null,
        to: to?.toISOString() ?? null,
        overall: s.overall,
        by_model: s.byModel,
        by_robot: s.byRobot,
        truncated: s.truncated,
      };
    },
  );
};
