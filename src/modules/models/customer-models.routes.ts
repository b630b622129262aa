import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { Principal } from "../../platform/auth.ts";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { CustomerModelsService } from "./customer-models.service.ts";
import { DELETE_PROBLEMS, PROBE_PROBLEMS, REGISTER_PROBLEMS, REPLACE_PROBLEMS } from "./models.problems.ts";
import { forCaller } from "./models.routes.ts";
import { CustomerModelBody, ModelParams, ModelSchema, ProbeBody, ProbeReportSchema } from "./models.schemas.ts";

/** JWT or API key (same as SECURITY_ANY in platform/auth.ts, typed for the schema). */
const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

function caller(p: Principal | null): Principal {
  if (p === null) throw errors.unauthorized();
  return p;
}

/**
 * POST /v1/models and DELETE /v1/models/{model_id}: a customer's own model endpoints (scope
 * `admin`, enterprise plan). Listing and describing them is GET /v1/models (models.routes.ts).
 */
export const customerModelsRoutes: FastifyPluginAsyncTypebox<
  ModuleOptions & { service: CustomerModelsService }
> = async (app, { platform, service }) => {
  const admin = platform.auth.require({ scopes: ["admin"] });
  const meter = platform.limits.meter();

  app.post(
    "/v1/models",
    {
      onRequest: admin,
      schema: {
        tags: ["models"],
        summary: "Register your own model endpoint",
        description:
          "Enterprise plan (otherwise 403 `enterprise_required`). Registers a model served from your own " +
          "`openvla-http` or `kserve-v2` endpoints, private to your account and served through the same path as the " +
          "service's models (authentication, limits, safety, logs, streams, analytics). The document is the registry " +
          "entry format of docs/models.md with the statistics inline; invalid fields are 422 `validation_failed` with " +
          "`errors`. Endpoint URLs must be https (http only where the operator allows it) and resolve to public " +
          "addresses only, unless the operator allow-lists a network; a refused URL is 422 `endpoint_not_allowed`. " +
          "Every connection checks the address again (DNS rebinding) and redirects are never followed. An id in use " +
          "is 409 `model_id_taken`; more than the operator's limit of models is 409 `model_limit_reached`. Every " +
          "instance serves the model within a second. `Location` names the new model.",
        security: SECURITY,
        body: CustomerModelBody,
        response: { 201: ModelSchema, ...REGISTER_PROBLEMS },
      },
    },
    async (request, reply) => {
      const principal = caller(request.principal);
      const info = await service.register(principal, request.body);
      await platform.audit.recordRequest(request, {
        action: "model.register",
        targetType: "model",
        targetId: info.id,
        customerId: principal.customerId,
        details: { backend: info.backend, endpoints: request.body.backend.endpoints.length },
      });
      reply.code(201).header("location", `/v1/models/${encodeURIComponent(info.id)}`);
      return reply.send(forCaller(info, principal));
    },
  );

  app.put(
    "/v1/models/:model_id",
    {
      onRequest: admin,
      schema: {
        tags: ["models"],
        summary: "Replace your own model",
        description:
          "Replaces the document of one of your registered models (same rules and errors as POST; the body's `id` " +
          "must be the path's). Every instance switches to the new document within a second; requests already sent " +
          "to the old one (queued or in flight) finish on it. Any other id is 404 `unknown_model`.",
        security: SECURITY,
        params: ModelParams,
        body: CustomerModelBody,
        response: { 200: ModelSchema, ...REPLACE_PROBLEMS },
      },
    },
    async (request) => {
      const principal = caller(request.principal);
      const info = await service.replace(principal, request.params.model_id, request.body);
      await platform.audit.recordRequest(request, {
        action: "model.replace",
        targetType: "model",
        targetId: info.id,
        customerId: principal.customerId,
        details: { backend: info.backend, endpoints: request.body.backend.endpoints.length },
      });
      return forCaller(info, principal);
    },
  );

  app.delete(
    "/v1/models/:model_id",
    {
      onRequest: admin,
      schema: {
        tags: ["models"],
        summary: "Delete your own model",
        description:
          "Stops serving one of your registered models on every instance: new requests naming it get 404 " +
          "`unknown_model`; requests already sent to it (queued or in flight) finish, then its connections close. " +
          "Any other id (the service's models, another account's) is 404 `unknown_model`.",
        security: SECURITY,
        params: ModelParams,
        response: { 204: Type.Null({ description: "Deleted." }), ...DELETE_PROBLEMS },
      },
    },
    async (request, reply) => {
      const principal = caller(request.principal);
      await service.remove(principal, request.params.model_id);
      await platform.audit.recordRequest(request, {
        action: "model.delete",
        targetType: "model",
        targetId: request.params.model_id,
        customerId: principal.customerId,
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/v1/models/:model_id/probe",
    {
      // A probe is an inference on your endpoint: it counts against the rate limit and quota.
      onRequest: [admin, meter],
      preValidation: async (request) => {
        // No body at all reads as {} (curl -X POST without -d).
        request.body ??= {};
      },
      schema: {
        tags: ["models"],
        summary: "Probe your own model endpoint",
        description:
          "Sends one synthetic camera frame (mid-grey, the model's input size) and an instruction to one of your " +
          "registered models, through the same path a request naming it takes (its queue, endpoints in turn, " +
          "retries, timeouts, answer checks), and reports what came back: the way to check an endpoint right after " +
          "registering it, or while a robot reports errors. 200 either way: `ok: true` with the un-normalized action " +
          "and timing, or `ok: false` with the `error` a request would have got (`model_unavailable`, " +
          "`inference_timeout`, `invalid_model_output`, ...). Not a robot's inference: no safety gate, no history " +
          "row; it counts against your rate limit and quota like one and shows in the model's `stats`. Only your " +
          "own models: any other id (the service's models included) is 404 `unknown_model`. The body is optional.",
        security: SECURITY,
        params: ModelParams,
        body: ProbeBody,
        response: { 200: ProbeReportSchema, ...PROBE_PROBLEMS },
      },
    },
    async (request) => {
      const principal = caller(request.principal);
      return service.probe(principal, request.params.model_id, {
        instruction: request.body.instruction,
        unnormKey: request.body.unnorm_key,
      });
    },
  );
};
