import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { ADVISORY_LOCKS } from "../../platform/db/advisory-locks.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { AdminCustomersRepo } from "./customers.repo.ts";
import { adminCustomersRoutes } from "./customers.routes.ts";
import { AdminCustomersService } from "./customers.service.ts";

/** How often every customer's `requests_30d` is recomputed from the hourly rollup (the list's sort key). */
export const METRICS_REFRESH_MS = 60_000;

/** Session advisory lock of the metrics refresh: one instance at a time (distinct from the other jobs' ids). */
export const ADMIN_METRICS_LOCK = ADVISORY_LOCKS.adminMetrics;

/** The repo the module's job uses, for tests and the benchmark (refresh on demand). */
export const adminCustomersRepos = new WeakMap<object, AdminCustomersRepo>();

/**
 * The operators' customer routes (`/admin/customers...`, superusers only) and the job keeping the
 * list's precomputed sort key `customer_admin_metrics.requests_30d` fresh
 * (docs/architecture.md, "Admin customer list"). Registered after safety and consent.
 */
export const adminCustomersModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const repo = new AdminCustomersRepo(platform.database.db);
  adminCustomersRepos.set(platform, repo);
  const service = new AdminCustomersService({
    repo,
    customerChanged: (id) => platform.limits.customerChanged(id),
  });
  await app.register(adminCustomersRoutes(repo, service, new AdminCustomersRepo(platform.database.read)), {
    platform,
  });

  if (!platform.backgroundJobs) return;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = platform.database
      .withSessionLock(ADMIN_METRICS_LOCK, async () => {
        await repo.refreshMetrics(new Date(platform.now()));
      })
      .catch((err: unknown) => {
        app.log.warn({ err }, "admin customer metrics refresh failed; the list keeps the previous values");
      });
  };
  app.addHook("onReady", async () => {
    tick();
    timer = setInterval(tick, METRICS_REFRESH_MS);
    timer.unref();
  });
  platform.lifecycle.onFlush("admin customer metrics", async () => {
    if (timer !== undefined) clearInterval(timer);
    await running;
  });
};
