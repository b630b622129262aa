import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { createRetentionMetrics, RetentionJob } from "./retention.job.ts";

/** Test seam: the retention job of an app (tests run it instead of waiting for the timer). */
export const retentionJobs = new WeakMap<Platform, RetentionJob>();

/** Test seam: one timer tick of an app (a run, then its log line), resolving when both are done. */
export const retentionTicks = new WeakMap<Platform, () => Promise<unknown>>();

/**
 * The retention job (docs/privacy.md "Retention"): every RETENTION_INTERVAL_MS, deletes what
 * outlived each customer's consent `retention_days`. No routes.
 */
export const retentionModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const job = new RetentionJob({
    database: platform.database,
    now: platform.now,
    defaultTier: platform.config.consent.defaultTier,
    batchSize: platform.config.retention.batchSize,
    metrics: createRetentionMetrics(platform.metrics.registry),
    objectStore: platform.objectStore,
  });
  retentionJobs.set(platform, job);

  let current: Promise<unknown> | undefined;
  const report = platform.jobs.register("retention", platform.config.retention.intervalMs);
  const tick = () => {
    current = report
      .run(() => job.run())
      .then(
        (r) => {
          if (r.ran) {
            app.log.info(
              {
                deleted: r.rows,
                instructionTextsCleared: r.instructionTextsCleared,
                partitionsDropped: r.partitions,
                contextRows: r.contextRows,
                imagesDeleted: r.imagesDeleted,
                imageKeysCleared: r.imageKeysCleared,
                stripeEvents: r.stripeEvents,
                customers: r.customers,
                durationMs: Math.round(r.durationMs),
              },
              "retention run",
            );
          }
        },
        (err: unknown) => app.log.warn({ err }, "retention run failed; retried at the next tick"),
      );
    return current;
  };
  retentionTicks.set(platform, tick);
  const timer = setInterval(() => void tick(), platform.config.retention.intervalMs);
  timer.unref();
  platform.lifecycle.onFlush("retention", async () => {
    clearInterval(timer);
    await job.stop();
    await current;
  });
};
