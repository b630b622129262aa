import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { AppError } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { RegistryChange } from "../inference/inference.service.ts";
import { ReloadResultSchema } from "./models-admin.schemas.ts";
import { changeView, logReload, problemsOf, RELOAD_TOPIC, reloadAndLog } from "./registry-reload.ts";

const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const problem = (description: string) => ({ $ref: "Problem#", description });

/**
 * POST /admin/models/reload (superusers), and the other side of its broadcast: a reload asked on
 * another instance reloads this one too (docs/models.md, "Live reload").
 */
export const modelsAdminModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const engine = platform.engine;
  const superuser = platform.auth.require({ superuser: true });
  platform.invalidation.on(RELOAD_TOPIC, () => {
    void reloadAndLog(engine, app.log, "broadcast");
  });

  app.post(
    "/admin/models/reload",
    {
      onRequest: superuser,
      schema: {
        tags: ["admin", "models"],
        summary: "Reload the model registry",
        description:
          "Reads the registry file (`MODELS_CONFIG`) again and applies it without a restart, as `SIGHUP` does. " +
          "Models are compared by id: new ones are built and warmed up before they take traffic; a changed one " +
          "(any difference in its parsed definition) gets a new instance, warmed up, then swapped in; unchanged ones " +
          "keep their queues and statistics. The swap of every model and of the default model is one step, so no " +
          "request sees half a registry. Replaced and removed models drain: the requests already sent to them finish, " +
          "then they close. Nothing fails because of the reload itself. A file with errors is refused (422 " +
          "`invalid_registry` with every problem in `problems`), as is a reload whose new or changed model fails to " +
          "warm up (502 `model_warm_up_failed`): the running registry keeps serving in both cases. Reloads run one " +
          "at a time. With Redis, the other instances are told to reload their own copy of the file too " +
          "(`broadcast`); their outcome is in their logs and `vla_model_registry_reloads_total`. Audited as " +
          "`model_registry.reload`. Superuser only (403 otherwise).",
        security: SECURITY_JWT,
        response: {
          200: { ...ReloadResultSchema, description: "The new registry is serving; what changed." },
          401: problem("unauthorized / invalid_token: no or a bad session."),
          403: problem("forbidden: not a superuser (a customer's owner session or `admin`-scope key is not one)."),
          422: problem(
            "invalid_registry: the file is unreadable, not JSON or has invalid entries; `problems` lists every one. Nothing changed.",
          ),
          502: problem(
            "model_warm_up_failed: a new or changed model did not warm up; `problems` names each. Nothing changed.",
          ),
          503: problem("shutting_down: the instance is stopping."),
        },
      },
    },
    async (request) => {
      let change: RegistryChange;
      try {
        change = await engine.reloadRegistry();
      } catch (e) {
        logReload(request.log, "api", e);
        await platform.audit.recordRequest(request, {
          action: "model_registry.reload",
          targetType: "model_registry",
          customerId: null,
          details: {
            outcome: "refused",
            code: e instanceof AppError ? e.code : "internal_error",
            problems: problemsOf(e).length,
          },
        });
        throw e;
      }
      logReload(request.log, "api", change);
      const view = changeView(change);
      await platform.audit.recordRequest(request, {
        action: "model_registry.reload",
        targetType: "model_registry",
        customerId: null,
        details: { outcome: "ok", ...view },
      });
      const broadcast = await platform.invalidation.broadcast(RELOAD_TOPIC, request.id);
      return { ...view, broadcast };
    },
  );
};
