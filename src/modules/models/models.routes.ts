import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import { ModelListSchema, ModelParams, ModelSchema } from "./models.schemas.ts";

/** JWT or API key (same as SECURITY_ANY in platform/auth.ts, typed for the schema). */
const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/** GET /v1/models and GET /v1/models/{model_id} (scope `inference`). */
export const modelsRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const requireInference = platform.auth.require({ scopes: ["inference"] });
  const engine = platform.engine;

  app.get(
    "/v1/models",
    {
      preHandler: requireInference,
      schema: {
        tags: ["models"],
        summary: "List models",
        description:
          "Every model this server serves, with its backend, status, action shape, accepted `unnorm_key`s, " +
          "input preprocessing and live statistics (requests, errors, latency percentiles, queue depth, mean batch size).",
        security: SECURITY,
        response: { 200: ModelListSchema },
      },
    },
    async () => ({ data: engine.list(), default_model: engine.defaultModel }),
  );

  app.get(
    "/v1/models/:model_id",
    {
      preHandler: requireInference,
      schema: {
        tags: ["models"],
        summary: "Describe one model",
        description: "One model's description and live statistics; 404 `unknown_model` lists the available ids.",
        security: SECURITY,
        params: ModelParams,
        response: { 200: ModelSchema },
      },
    },
    async (request) => engine.describe(request.params.model_id),
  );
};
