import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import { SuspensionRepo } from "./suspension.repo.ts";
import { suspensionRoutes } from "./suspension.routes.ts";
import { SuspensionService } from "./suspension.service.ts";

/** The operator's suspension of customers and superuser grants (docs/admin.md). */
export const suspensionModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const service = new SuspensionService({
    repo: new SuspensionRepo(platform.database.db),
    invalidation: platform.invalidation,
    now: platform.now,
  });
  await app.register(suspensionRoutes, { platform, service });
};
