import type { ModuleOptions, ModulePlugin } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { Pseudonymizer } from "../../platform/pseudonym.ts";
import { analyticsRoutes } from "./analytics.routes.ts";
import { AnalyticsService } from "./analytics.service.ts";
import { RollupJob } from "./rollup-job.ts";
import { RollupsRepo } from "./rollups.repo.ts";

export interface AnalyticsContext {
  readonly job: RollupJob;
  readonly repo: RollupsRepo;
  readonly service: AnalyticsService;
}

/** Test seam: the analytics context of an app (tests step the job instead of waiting for the timer). */
export const analyticsContexts = new WeakMap<Platform, AnalyticsContext>();

/**
 * Usage analytics: rollup tables kept current by a job following inference_logs and feedback,
 * and the /v1/analytics routes reading them. docs/analytics.md.
 */
export const analyticsModule: ModulePlugin = async (app, { platform }: ModuleOptions) => {
  const db = platform.database.db;
  const repo = new RollupsRepo(new Pseudonymizer(platform.config.auth.secretKey));
  const job = new RollupJob({
    db,
    repo,
    registry: platform.metrics.registry,
    log: app.log.child({ module: "analytics" }),
    report: platform.jobs.register("analytics.rollups", platform.config.analytics.rollupIntervalMs),
  });
  // The routes' queries are heavy reads: the read replica when configured (docs/operations.md).
  const service = new AnalyticsService(platform.database.read);
  analyticsContexts.set(platform, { job, repo, service });

  platform.deletion.register({
    name: "analytics",
    deleteCustomer: ({ tx, customerId }) => repo.deleteCustomer(tx, customerId),
  });

  await app.register(analyticsRoutes, { platform, service });

  const cfg = platform.config.analytics;
  if (cfg.rollups) {
    app.addHook("onReady", async () => job.start(cfg.rollupIntervalMs));
    platform.lifecycle.onFlush("analytics-job", () => job.stop());
  }
};
