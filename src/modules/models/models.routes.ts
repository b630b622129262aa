import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Principal } from "../../platform/auth.ts";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { ModelInfo } from "../inference/inference.service.ts";
import { DESCRIBE_PROBLEMS, LIST_PROBLEMS } from "./models.problems.ts";
import { ModelListSchema, ModelParams, ModelSchema } from "./models.schemas.ts";

/** JWT or API key (same as SECURITY_ANY in platform/auth.ts, typed for the schema). */
const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

/**
 * Backend host:port is the operator's internal topology: superusers see it in the `gpu` entries,
 * everyone else sees the endpoint's position in the model's endpoint list ("endpoint-0", ...).
 */
export function forCaller(info: ModelInfo, principal: Principal | undefined): ModelInfo {
  if (info.gpu === undefined || principal?.isSuperuser === true) return info;
  return { ...info, gpu: info.gpu.map((g) => ({ ...g, endpoint: `endpoint-${g.index}` })) };
}

/** The caller (set by the preHandler): which restricted models it may see. */
function viewer(p: Principal | null): Principal {
  if (p === null) throw errors.unauthorized();
  return p;
}

/** GET /v1/models and GET /v1/models/{model_id} (scope `inference`); writes are customer-models.routes.ts. */
export const modelsRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const requireInference = platform.auth.require({ scopes: ["inference"] });
  const engine = platform.engine;

  app.get(
    "/v1/models",
    {
      onRequest: requireInference,
      schema: {
        tags: ["models"],
        summary: "List models",
        description:
          "Every model this server serves to the caller (a model restricted to other customers is left out; " +
          "superusers see all), then the models the caller's account registered itself (`owner: customer`, " +
          "POST /v1/models), each with its backend, status, action shape, accepted `unnorm_key`s, " +
          "input preprocessing and live statistics (requests, errors, latency percentiles, queue depth, mean batch size).",
        security: SECURITY,
        response: { 200: ModelListSchema, ...LIST_PROBLEMS },
      },
    },
    async (request) => {
      const caller = viewer(request.principal);
      return { data: engine.list(caller).map((m) => forCaller(m, caller)), default_model: engine.defaultModel };
    },
  );

  app.get(
    "/v1/models/:model_id",
    {
      onRequest: requireInference,
      schema: {
        tags: ["models"],
        summary: "Describe one model",
        description:
          "One model's description and live statistics; 404 `unknown_model` lists the available ids. " +
          "A model restricted to other customers, or registered by another account, answers 404 `unknown_model` as if it did not exist.",
        security: SECURITY,
        params: ModelParams,
        response: { 200: ModelSchema, ...DESCRIBE_PROBLEMS },
      },
    },
    async (request) => {
      const caller = viewer(request.principal);
      return forCaller(engine.describe(request.params.model_id, caller), caller);
    },
  );
};
