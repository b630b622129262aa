import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { ERROR_CATALOGUE, type ErrorCode, errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import {
  HealthSchema,
  LiveSchema,
  ProblemTypeListSchema,
  ProblemTypeParams,
  ProblemTypeSchema,
} from "./ops.schemas.ts";

const started = Date.now();

function describe(code: ErrorCode) {
  const e = ERROR_CATALOGUE[code];
  return { code, status: e.status, title: e.title, documentation: `docs/errors.md#${code}` };
}

/** Health, liveness, Prometheus metrics and the error-type catalogue. */
export const opsRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  app.get(
    "/health",
    {
      schema: {
        tags: ["health"],
        summary: "Readiness and component health",
        description:
          "Runs every component check (database, redis, and those modules add) concurrently with a timeout. " +
          "200 while the service can serve (status ok or degraded); 503 when a critical component such as the database is down.",
        response: { 200: HealthSchema, 503: HealthSchema },
      },
    },
    async (_request, reply) => {
      const result = await platform.health.run();
      return reply.code(result.status === "down" ? 503 : 200).send({
        status: result.status,
        version: platform.config.version,
        environment: platform.config.env,
        uptime_seconds: Math.round((Date.now() - started) / 10) / 100,
        checks: result.checks,
      });
    },
  );

  app.get(
    "/health/live",
    {
      schema: {
        tags: ["health"],
        summary: "Liveness probe",
        description: "200 whenever the process can answer HTTP; checks nothing else.",
        response: { 200: LiveSchema },
      },
    },
    async () => ({ status: "ok" as const }),
  );

  app.get(
    "/metrics",
    {
      schema: {
        tags: ["health"],
        summary: "Prometheus metrics",
        description: "Prometheus text exposition format 0.0.4: HTTP, process and module metrics.",
        produces: ["text/plain"],
        response: {
          200: Type.String({
            description: "Prometheus text format.",
            examples: [
              '# HELP vla_app_info Application version and environment (always 1).\nvla_app_info{version="0.1.0",environment="development"} 1\n',
            ],
          }),
        },
      },
    },
    async (_request, reply) => {
      const body = await platform.metrics.registry.metrics();
      return reply.type(platform.metrics.registry.contentType).send(body);
    },
  );

  app.get(
    "/problems",
    {
      schema: {
        tags: ["meta"],
        summary: "List error codes",
        description: "Every error code the API can return, with its HTTP status and title.",
        response: { 200: ProblemTypeListSchema },
      },
    },
    async () => (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).map(describe),
  );

  app.get(
    "/problems/:code",
    {
      schema: {
        tags: ["meta"],
        summary: "Describe one error code",
        description: "The target of every problem document's `type` URI.",
        params: ProblemTypeParams,
        response: { 200: ProblemTypeSchema },
      },
    },
    async (request) => {
      const code = request.params.code;
      if (!Object.hasOwn(ERROR_CATALOGUE, code)) throw errors.notFound("Error code");
      return describe(code as ErrorCode);
    },
  );
};
