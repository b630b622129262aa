import type { ModuleOptions, ModulePlugin } from "../../platform/module.ts";
import { safetyServices } from "../safety/safety.module.ts";
import { SafetyRepo } from "../safety/safety.repo.ts";
import { RevenueRepo } from "./revenue.repo.ts";
import { StatsRepo } from "./stats.repo.ts";
import { adminStatsRoutes } from "./stats.routes.ts";

/**
 * The operators' read side of the admin surface: platform statistics, revenue, safety across
 * customers and deep health (docs/admin.md). Registered after the safety module (it uses its
 * service's emergency-stop registry).
 */
export const adminStatsModule: ModulePlugin = async (app, { platform }: ModuleOptions) => {
  const safety = safetyServices.get(platform);
  if (safety === undefined) throw new Error("adminStatsModule needs the safety module registered first");
  // Statistics, revenue and cross-customer safety lists: heavy reads, on the read replica when configured.
  const db = platform.database.read;
  await app.register(adminStatsRoutes, {
    platform,
    stats: new StatsRepo(db),
    revenue: new RevenueRepo(db),
    safetyRepo: new SafetyRepo(db),
    safety,
  });
};
