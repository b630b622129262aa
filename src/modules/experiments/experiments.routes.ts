import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { decodePageCursor, encodePageCursor, pageOf } from "../../platform/db/page-cursor.ts";
import { errors } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  CreateExperimentBody,
  ExperimentPageSchema,
  ExperimentSchema,
  IdParams,
  ListQuery,
  ResultsSchema,
  ShadowPageSchema,
  ShadowQuery,
} from "./experiments.schemas.ts";
import { type CreateExperimentBody as Body, type ExperimentsService, experimentView } from "./experiments.service.ts";

export interface ExperimentRouteOptions {
  readonly platform: Platform;
  readonly service: ExperimentsService;
}

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });

const TAGS = ["experiments"];

/**
 * `POST/GET /v1/experiments`, `GET /v1/experiments/{id}`, `POST /v1/experiments/{id}/stop`,
 * `GET /v1/experiments/{id}/results` and `/shadow`. Changes need the `admin` scope (account owner
 * sessions, admin keys); reads any principal of the customer. Other customers' ids are 404.
 */
export const experimentRoutes: FastifyPluginAsyncTypebox<ExperimentRouteOptions> = async (
  app,
  { platform, service },
) => {
  const admin = platform.auth.require({ scopes: ["admin"] });
  const reader = platform.auth.require();

  app.post(
    "/v1/experiments",
    {
      onRequest: admin,
      schema: {
        tags: TAGS,
        summary: "Start a model experiment (split traffic or shadow a candidate)",
        description:
          "mode split: requests that name no model (and whose API key names none) are routed to one of the variants " +
          "by weight, sticky per robot (assignment robot_id) or drawn per request; responses say which variant " +
          "served them (`experiment` in JSON, `VLA-Experiment` header on /act). mode shadow: a sampled fraction of " +
          "live requests also runs on candidate_model after the answer is sent, never delaying it; see " +
          "GET /v1/experiments/{id}/shadow. Models must be ones you may use (422); one split and one shadow " +
          "experiment may be scheduled or running at a time (409 `experiment_running`). docs/experiments.md.",
        security: SECURITY,
        body: CreateExperimentBody,
        response: {
          201: { ...ExperimentSchema, description: "Created." },
          "4XX": PROBLEM("Problem: invalid body or unknown model (422), auth (401/403), already running (409)."),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const row = await service.create(principal, request.body as Body);
      reply.code(201);
      return experimentView(row, platform.now());
    },
  );

  app.get(
    "/v1/experiments",
    {
      onRequest: reader,
      schema: {
        tags: TAGS,
        summary: "Your experiments",
        description: "Newest first, with cursor pagination (`limit` default 50, max 100).",
        security: SECURITY,
        querystring: ListQuery,
        response: { 200: ExperimentPageSchema },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const q = request.query;
      const rows = await service.list(
        principal.customerId,
        q.cursor === undefined ? undefined : decodePageCursor(q.cursor),
        q.limit,
      );
      const { page, nextCursor } = pageOf(rows, q.limit);
      const now = platform.now();
      return { data: page.map((r) => experimentView(r, now)), next_cursor: nextCursor };
    },
  );

  app.get(
    "/v1/experiments/:id",
    {
      onRequest: reader,
      schema: {
        tags: TAGS,
        summary: "One experiment",
        description: "404 `not_found` for ids of other customers.",
        security: SECURITY,
        params: IdParams,
        response: { 200: ExperimentSchema, "4XX": PROBLEM("Problem: auth (401/403), not found (404).") },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      return experimentView(await service.get(principal.customerId, request.params.id), platform.now());
    },
  );

  app.post(
    "/v1/experiments/:id/stop",
    {
      onRequest: admin,
      schema: {
        tags: TAGS,
        summary: "Stop an experiment",
        description:
          "Routing (or shadowing) stops at once on this instance and, with Redis, on every other; without Redis " +
          "other instances follow within EXPERIMENTS_CACHE_MS. Stopping a stopped experiment changes nothing. " +
          "Its results stay readable.",
        security: SECURITY,
        params: IdParams,
        response: { 200: ExperimentSchema, "4XX": PROBLEM("Problem: auth (401/403), not found (404).") },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      return experimentView(await service.stop(principal.customerId, request.params.id), platform.now());
    },
  );

  app.get(
    "/v1/experiments/:id/results",
    {
      onRequest: reader,
      schema: {
        tags: TAGS,
        summary: "Compare a split experiment's variants",
        description:
          "Per variant, from the inference logs and the feedback on them (joined by inference id): requests, error " +
          "rate, latency (mean, p50, p95 over successful requests), safety verdicts, success ratings, success rate " +
          "(inferences with a reported outcome: no failure report and mean success rating >= 4), safety ratings and " +
          "correction magnitude. Each variant is compared with the first (control): the mean success rating by " +
          "Welch's t-test over rated inferences (each counted once, with the mean of its ratings), the success rate by the pooled two-proportion z-test, both two-sided, with the sample " +
          "sizes. Logs are written in batches: the last second may be missing. A shadow experiment is 409 `conflict`.",
        security: SECURITY,
        params: IdParams,
        response: {
          200: ResultsSchema,
          "4XX": PROBLEM("Problem: auth (401/403), not found (404), a shadow experiment (409)."),
        },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      return service.results(principal.customerId, request.params.id);
    },
  );

  app.get(
    "/v1/experiments/:id/shadow",
    {
      onRequest: reader,
      schema: {
        tags: TAGS,
        summary: "A shadow experiment's records",
        description:
          "Each shadowed request: the served and the candidate's action, the candidate's safety verdict (judged " +
          "without side effects) and their distance (translation: L2 of dims 0-2; rotation: L2 of dims 3-5; " +
          "gripper: |dim 6|), newest first with cursor pagination, optionally for one robot or one instruction; " +
          "plus a summary (mean and p95 distances, verdict mix) over every matching record. A split experiment is " +
          "409 `conflict`.",
        security: SECURITY,
        params: IdParams,
        querystring: ShadowQuery,
        response: {
          200: ShadowPageSchema,
          "4XX": PROBLEM("Problem: invalid query (400), auth (401/403), not found (404), a split experiment (409)."),
        },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      const q = request.query;
      const out = await service.shadowResults(
        principal.customerId,
        request.params.id,
        { robotId: q.robot_id, instruction: q.instruction },
        q.cursor === undefined ? undefined : decodePageCursor(q.cursor),
        q.limit,
      );
      return {
        summary: out.summary,
        data: out.data,
        next_cursor: out.next === null ? null : encodePageCursor(out.next),
      };
    },
  );
};
