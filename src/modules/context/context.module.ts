import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { BatchWriter } from "../../platform/batch-writer.ts";
import { keysetPages } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  type ContextCursor,
  type ContextMetadataEntry,
  ContextMetadataRepo,
  type ExportContextRow,
} from "./context-metadata.repo.ts";
import { ContextRecorder } from "./context-recorder.ts";
import { createUploadMetrics, customerImagePrefix, ImageUploadQueue } from "./image-uploads.ts";

/** The app's recorder, for the inference runner (registered before the inference module). */
export const contextRecorders = new WeakMap<Platform, ContextRecorder>();

/** Test seam: the context_metadata writer and the upload queue of an app (tests flush and drain them). */
export const contextWriters = new WeakMap<Platform, BatchWriter<ContextMetadataEntry>>();
export const imageUploadQueues = new WeakMap<Platform, ImageUploadQueue>();

/**
 * What an inference's image leaves behind (docs/privacy.md, "Images and embeddings"):
 * context_metadata rows written by a batch writer, camera images stored through an upload queue
 * into `platform.objectStore`, their account-export sections and their erasure. The retention
 * job (src/modules/retention) deletes both by age and when `store_images` is withdrawn.
 */
export const contextModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const store = platform.objectStore;
  const cfg = platform.config.objectStore;
  const uploads = new ImageUploadQueue({
    store,
    maxQueued: cfg.uploadQueueMax,
    attempts: cfg.uploadAttempts,
    retryMs: cfg.uploadRetryMs,
    metrics: createUploadMetrics(platform.metrics.registry),
    log: app.log,
  });
  imageUploadQueues.set(platform, uploads);
  // Before the writer is created: flush hooks run in registration order, so uploads settle (and
  // push their rows) before the writer's final flush.
  platform.lifecycle.onFlush("image-uploads", () => uploads.close());

  const repo = new ContextMetadataRepo(platform.database.db);
  const writer = await platform.batchWriter<ContextMetadataEntry>("context-metadata", {
    write: (rows) => repo.insertMany(rows),
  });
  contextWriters.set(platform, writer);
  contextRecorders.set(platform, new ContextRecorder({ sink: writer, uploads }));

  const batchRows = platform.config.exports.batchRows;
  platform.exports.register({
    name: "context_metadata",
    file: "context_metadata.ndjson",
    async *rows(customerId, db) {
      // Rows wait for their upload, then sit in the writer: both first, so the export is complete.
      // Bounded: a customer sending images all the time must not hold its export up forever.
      await Promise.race([uploads.settled(customerId), new Promise((r) => setTimeout(r, 30_000).unref())]);
      await writer.flush();
      const rows = new ContextMetadataRepo(db);
      yield* keysetPages<ExportContextRow, ContextCursor>(
        (after, limit) => rows.exportPage(customerId, after, limit),
        (row) => ({ createdAt: row.created_at, inferenceId: row.inference_id }),
        batchRows,
      );
    },
  });
  platform.exports.register({
    name: "images",
    file: "images.ndjson",
    dir: "images",
    async *files(customerId) {
      const prefix = customerImagePrefix(customerId);
      for await (const key of store.list(prefix)) {
        const obj = await store.get(key);
        if (obj === undefined) continue; // deleted since it was listed
        const name = key.slice(prefix.length);
        yield {
          name,
          size: obj.size,
          body: obj.body,
          line: { key, sha256: name.replace(/\.[a-z]+$/, ""), bytes: obj.size },
        };
      }
    },
  });

  platform.deletion.register({
    name: "context-metadata",
    async deleteCustomer({ tx, customerId }) {
      return { context_metadata: await new ContextMetadataRepo(tx).deleteCustomer(customerId) };
    },
    // Objects are not in the transaction: deleted once it committed, after rows still in flight.
    async afterCommit({ customerId, wholeCustomer }) {
      if (!wholeCustomer) return;
      // Its keys are gone, so no new upload starts; those in flight would write objects and rows
      // after the deletion: wait for them, then delete again.
      await uploads.settled(customerId);
      await writer.flush();
      await repo.deleteCustomer(customerId);
      for await (const key of store.list(customerImagePrefix(customerId))) await store.delete(key);
    },
  });
};
