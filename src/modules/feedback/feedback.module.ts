import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Counter } from "prom-client";
import { feedback } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { inferenceLogWriters } from "../inference/inference.module.ts";
import { FeedbackRepo } from "./feedback.repo.ts";
import { feedbackRoutes } from "./feedback.routes.ts";
import { FeedbackService } from "./feedback.service.ts";

/**
 * Ground-truth feedback on inferences (success and safety ratings, corrected actions, failure
 * reports), its list and statistics, and the deletion hook. Registered after the inference
 * module: it flushes that module's log writer when an inference is not stored yet.
 */
export const feedbackModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const config = platform.config.feedback;
  const repo = new FeedbackRepo(platform.database.db);
  const writer = inferenceLogWriters.get(platform);
  const submitted = new Counter({
    name: "vla_feedback_total",
    help: "Feedback requests stored (created) or answered from an Idempotency-Key (replayed), by type.",
    labelNames: ["type", "outcome"] as const,
    registers: [platform.metrics.registry],
  });
  const lookups = new Counter({
    name: "vla_feedback_inference_lookups_total",
    help: "Inference lookups of feedback requests: found, found_after_flush, found_after_wait, not_found.",
    labelNames: ["result"] as const,
    registers: [platform.metrics.registry],
  });
  const service = new FeedbackService({
    repo,
    flushInferenceLogs: async () => {
      await writer?.flush();
    },
    // Waiting only helps when another instance may hold the row in its buffer.
    lookupWaitMs: platform.config.limits.instanceCount > 1 ? config.lookupWaitMs : 0,
    maxAgeDays: config.maxAgeDays,
    now: platform.now,
    events: {
      submitted: (type, replayed) => submitted.inc({ type, outcome: replayed ? "replayed" : "created" }),
      lookup: (result) => lookups.inc({ result }),
    },
  });

  platform.exports.register(
    tableSection({
      name: "feedback",
      file: "feedback.ndjson",
      table: feedback,
      customer: feedback.customerId,
      key: feedback.id,
      // Internal bookkeeping: the request fingerprint and the analytics watermark.
      omit: ["requestHash", "ingestXid"],
      batchRows: platform.config.exports.batchRows,
    }),
  );

  platform.deletion.register({
    name: "feedback",
    async deleteUser({ tx, userId }) {
      return { feedback_unattributed: await new FeedbackRepo(tx).forgetUser(userId) };
    },
    async deleteCustomer({ tx, customerId }) {
      return { feedback: await new FeedbackRepo(tx).deleteCustomer(customerId) };
    },
  });

  await app.register(feedbackRoutes, { platform, service });
};
