import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Counter, Gauge } from "prom-client";
import type { BatchWriter } from "../../platform/batch-writer.ts";
import { experiments, shadowResults } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import type { ShadowJob } from "../inference/inference-runner.ts";
import { safetyServices } from "../safety/safety.module.ts";
import { ExperimentsRepo, type ShadowEntry } from "./experiments.repo.ts";
import { experimentRoutes } from "./experiments.routes.ts";
import { ExperimentsService } from "./experiments.service.ts";
import { ShadowQueue } from "./shadow-queue.ts";

/** The app's experiments service: the inference runner's ExperimentGate (and a test seam). */
export const experimentServices = new WeakMap<Platform, ExperimentsService>();

/** Test seam: the shadow-results writer of an app (tests flush it instead of waiting). */
export const shadowWriters = new WeakMap<Platform, BatchWriter<ShadowEntry>>();

/**
 * Model experiments (docs/experiments.md): split traffic between models and shadow a candidate.
 * Registered before the inference module, whose runner routes through the service.
 */
export const experimentsModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const config = platform.config.experiments;
  const repo = new ExperimentsRepo(platform.database.db);
  const shadowCount = new Counter({
    name: "vla_shadow_requests_total",
    help: "Shadow requests: run (candidate answered and recorded), error (candidate failed), dropped (queue full).",
    labelNames: ["outcome"] as const,
    registers: [platform.metrics.registry],
  });
  for (const outcome of ["run", "error", "dropped"]) shadowCount.inc({ outcome }, 0);
  let queue: ShadowQueue<ShadowJob> | undefined;
  // Before the writer's own flush hook (hooks run in order): in-flight candidates get to push their rows.
  platform.lifecycle.onFlush("shadow-queue", () => queue?.close(2_000));
  const writer = await platform.batchWriter<ShadowEntry>("shadow-results", {
    write: (rows) => repo.insertShadow(rows),
  });
  const service = new ExperimentsService({
    repo,
    engine: platform.engine,
    safety: safetyServices.get(platform),
    invalidation: platform.invalidation,
    cacheMs: config.cacheMs,
    now: platform.now,
    sink: writer,
    queue: (run) => {
      queue = new ShadowQueue<ShadowJob>({
        max: config.shadowQueueMax,
        maxBytes: config.shadowQueueMaxBytes,
        concurrency: config.shadowConcurrency,
        run,
        count: (outcome) => shadowCount.inc({ outcome }),
        key: (job) => job.principal.customerId,
        bytes: (job) => (job.image.imageBytes?.byteLength ?? 0) + (job.image.imageArray?.data.byteLength ?? 0),
      });
      return queue;
    },
    onLoadError: (err) => app.log.warn({ err }, "experiments lookup failed; requests are served as named"),
  });
  new Gauge({
    name: "vla_shadow_queue_depth",
    help: "Shadow requests waiting for the candidate model on this instance.",
    registers: [platform.metrics.registry],
    collect() {
      this.set(service.queue.waiting);
    },
  });
  experimentServices.set(platform, service);
  shadowWriters.set(platform, writer);

  const batchRows = platform.config.exports.batchRows;
  platform.exports.register(
    tableSection({
      name: "experiments",
      file: "experiments.ndjson",
      table: experiments,
      customer: experiments.customerId,
      key: experiments.id,
      omit: [],
      batchRows,
    }),
  );
  platform.exports.register(
    tableSection({
      name: "shadow_results",
      file: "shadow_results.ndjson",
      table: shadowResults,
      customer: shadowResults.customerId,
      key: shadowResults.id,
      omit: [],
      batchRows,
    }),
  );

  platform.deletion.register({
    name: "shadow-results",
    async deleteUser({ tx, userId }) {
      return { experiments_unattributed: await new ExperimentsRepo(tx).forgetUser(userId) };
    },
    async deleteCustomer({ tx, customerId }) {
      return { shadow_results: await new ExperimentsRepo(tx).deleteShadowOfCustomer(customerId) };
    },
    // Rows still buffered when the transaction ran would be written afterwards: flush, delete again.
    async afterCommit({ customerId, wholeCustomer }) {
      if (!wholeCustomer) return;
      await writer.flush();
      await repo.deleteShadowOfCustomer(customerId);
    },
  });

  await app.register(experimentRoutes, { platform, service });
};
