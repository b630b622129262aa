import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import { AuditRepo } from "./audit.repo.ts";
import { auditRoutes } from "./audit.routes.ts";

/**
 * The audit log's routes. Entries are written by every module through `platform.audit`
 * (platform/audit.ts); account erasure keeps them (they hold ids, never content).
 */
export const auditModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  await app.register(auditRoutes(new AuditRepo(platform.database.db)), { platform });
};
