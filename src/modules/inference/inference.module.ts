import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { BatchWriter } from "../../platform/batch-writer.ts";
import { keysetPages } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { Pseudonymizer } from "../../platform/pseudonym.ts";
import { consentServices } from "../consent/consent.module.ts";
import { contextRecorders } from "../context/context.module.ts";
import { experimentServices } from "../experiments/experiments.module.ts";
import { safetyServices } from "../safety/safety.module.ts";
import { actRoutes } from "./act.routes.ts";
import { inferenceRoutes } from "./inference.routes.ts";
import {
  type ExportLogRow,
  type HistoryCursor,
  type InferenceLogEntry,
  InferenceLogsRepo,
} from "./inference-logs.repo.ts";
import { createInferenceApiMetrics, InferenceRunner } from "./inference-runner.ts";

/** Test seam: the inference-log writer of an app (tests flush it instead of waiting). */
export const inferenceLogWriters = new WeakMap<Platform, BatchWriter<InferenceLogEntry>>();

/** The app's inference runner, for entry points registered by other modules (streaming). */
export const inferenceRunners = new WeakMap<Platform, InferenceRunner>();

/**
 * The inference API: REST (`/v1/inference`), history, `/act`; inference logs written by a
 * batch writer into the monthly-partitioned `inference_logs`, a job creating partitions ahead,
 * and the GDPR deletion hook.
 */
export const inferenceModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const repo = new InferenceLogsRepo(platform.database.db);
  const writer = await platform.batchWriter<InferenceLogEntry>("inference-logs", {
    write: (rows) => repo.insertMany(rows),
  });
  inferenceLogWriters.set(platform, writer);

  // Partitions: the current month and the next two, at start and periodically after.
  const report = platform.jobs.register("inference_logs.partitions", platform.config.inference.partitionCheckMs);
  const ensure = async () => {
    try {
      const r = await report.run(() => repo.ensurePartitions(new Date(platform.now()), 2));
      if (r.created.length > 0) app.log.info({ partitions: r.created }, "inference_logs partitions created");
      if (r.failed.length > 0) {
        report.failed(new Error(`partitions not created: ${r.failed.join(", ")}`));
        app.log.warn(
          { partitions: r.failed },
          "inference_logs partitions could not be created; rows go to the default partition",
        );
      }
    } catch (err) {
      app.log.warn({ err }, "inference_logs partition check failed; will retry");
    }
  };
  await ensure();
  const timer = setInterval(() => void ensure(), platform.config.inference.partitionCheckMs);
  timer.unref();
  platform.lifecycle.onFlush("inference-partitions", () => clearInterval(timer));

  const batchRows = platform.config.exports.batchRows;
  platform.exports.register({
    name: "inference_logs",
    file: "inference_logs.ndjson",
    flush: () => writer.flush(), // rows still buffered belong in the export too
    async *rows(customerId, db) {
      const logs = new InferenceLogsRepo(db);
      yield* keysetPages<ExportLogRow, HistoryCursor>(
        (after, limit) => logs.exportPage(customerId, after, limit),
        (row) => ({ createdAt: row.created_at, id: row.id }),
        batchRows,
      );
    },
  });

  platform.deletion.register({
    name: "inference-logs",
    async deleteCustomer({ tx, customerId }) {
      return { inference_logs: await new InferenceLogsRepo(tx).deleteCustomer(customerId) };
    },
    // Rows still buffered when the transaction ran would be written afterwards: flush, delete again.
    async afterCommit({ customerId, wholeCustomer }) {
      if (!wholeCustomer) return;
      await writer.flush();
      await repo.deleteCustomer(customerId);
    },
  });

  const runner = new InferenceRunner({
    engine: platform.engine,
    sink: writer,
    logInstructions: platform.config.inference.logInstructions,
    counter: createInferenceApiMetrics(platform.metrics.registry),
    now: platform.now,
    safety: safetyServices.get(platform),
    consent: consentServices.get(platform),
    pseudonyms: new Pseudonymizer(platform.config.auth.secretKey),
    context: contextRecorders.get(platform),
    experiments: experimentServices.get(platform),
  });
  inferenceRunners.set(platform, runner);
  // History pages are heavy reads and already trail the writes by the batch writer's second: the read
  // replica when configured. GET /v1/inference/{id} (fetched right after it was made) stays on the primary.
  const historyRepo = new InferenceLogsRepo(platform.database.read);
  await app.register(inferenceRoutes, { platform, runner, repo, historyRepo });
  await app.register(actRoutes, { platform, runner, repo });
};
