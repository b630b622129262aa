import path from "node:path";
import { Counter } from "prom-client";
import type { ModuleOptions, ModulePlugin } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { accountSections } from "./account-sections.ts";
import { ExportRepo } from "./export.repo.ts";
import { exportRoutes } from "./export.routes.ts";
import { ExportService } from "./export.service.ts";

/** Test seam: the export service of an app (tests wait for its queue and run its cleanup). */
export const exportServices = new WeakMap<Platform, ExportService>();

/** DATA_DIR/exports: where archives live until they expire. */
export const exportsDir = (dataDir: string) => path.join(dataDir, "exports");

/**
 * Account export (GDPR Art. 15/20; docs/privacy.md "Export"): the job runner, its routes, the
 * profile and members sections, the cleanup of expired archives (at startup and on a timer) and
 * the deletion hook. Other modules register their own sections on `platform.exports`.
 */
export const accountExportModule: ModulePlugin = async (app, { platform }: ModuleOptions) => {
  const cfg = platform.config.exports;
  const dir = exportsDir(platform.config.dataDir);
  const log = app.log.child({ module: "account-export" });
  const finished = new Counter({
    name: "vla_account_exports_total",
    help: "Account export jobs finished, by outcome (done, failed).",
    labelNames: ["outcome"] as const,
    registers: [platform.metrics.registry],
  });
  const service = new ExportService({
    repo: new ExportRepo(platform.database.db),
    db: platform.database.db,
    // The archive is a heavy read: the read replica, once it has replayed the writes made before.
    readDb: () => platform.database.readAfterWrites(),
    registry: platform.exports,
    dir,
    now: platform.now,
    ttlMs: cfg.ttlHours * 3_600_000,
    progressEvery: cfg.batchRows,
    singleInstance: platform.database.kind === "pglite" || platform.config.limits.instanceCount <= 1,
    log,
    onFinished: (outcome) => finished.inc({ outcome }),
  });
  exportServices.set(platform, service);
  for (const section of accountSections) platform.exports.register(section);

  platform.deletion.register({
    name: "account-exports",
    async deleteCustomer({ tx, customerId }) {
      return { account_exports: await new ExportRepo(tx).deleteCustomer(customerId) };
    },
    // The archives of deleted rows are orphans now: the cleanup removes files no job owns.
    async afterCommit({ wholeCustomer }) {
      if (wholeCustomer) await service.cleanup();
    },
  });

  let timer: NodeJS.Timeout | undefined;
  app.addHook("onReady", async () => {
    if (!platform.backgroundJobs) return;
    try {
      await service.recover();
    } catch (e) {
      log.error({ err: e }, "account export recovery failed");
    }
    const report = platform.jobs.register("account_exports.cleanup", cfg.cleanupIntervalMs);
    timer = setInterval(() => {
      report.run(() => service.cleanup()).catch((e: unknown) => log.error({ err: e }, "account export cleanup failed"));
    }, cfg.cleanupIntervalMs);
    timer.unref();
  });
  platform.lifecycle.onFlush("account-exports", async () => {
    if (timer !== undefined) clearInterval(timer);
    await service.stop();
  });

  await app.register(exportRoutes, { platform, service, dir });
};
