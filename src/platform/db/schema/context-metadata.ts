import { sql } from "drizzle-orm";
import { index, integer, pgTable, real, text, timestamp, uuid } from "drizzle-orm/pg-core";

/**
 * What an inference's image leaves behind (docs/privacy.md, "Images and embeddings"): one row per
 * inference that carried an image, written by a batch writer off the request path. The hash and
 * size are always kept (metrics, not content); `embedding` only with consent `store_embeddings`,
 * `image_key` only with `store_images`. Anonymization `full` writes no row. Not partitioned
 * (unlike inference_logs): rows that name a stored image must be deleted one by one with their
 * object, so retention never drops a month whole here. No foreign key, as for inference_logs:
 * the deletion hook removes a customer's rows and the batch insert stays free of FK checks.
 */
export const contextMetadata = pgTable(
  "context_metadata",
  {
    inferenceId: uuid("inference_id").primaryKey(),
    customerId: uuid("customer_id").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull(),
    /** SHA-256 (hex) of the image bytes as received (the encoded file, or the uint8 array's bytes). */
    imageSha256: text("image_sha256").notNull(),
    /** `jpeg`, `png`, `webp`, or `array` (a uint8 HxWx3 array, stored as PNG). */
    imageFormat: text("image_format").notNull(),
    imageBytes: integer("image_bytes").notNull(),
    width: integer("width").notNull(),
    height: integer("height").notNull(),
    /** 64 float32 values, only with `store_embeddings`; what they are is `embedding_kind`. */
    embedding: real("embedding").array(),
    /** `thumbnail-8x8-v1` (src/modules/context/thumbnail-embedding.ts): not a learned embedding. */
    embeddingKind: text("embedding_kind"),
    /** The object store key `images/<customer_id>/<sha256>.<ext>`, only with `store_images`. */
    imageKey: text("image_key"),
  },
  (t) => [
    index("context_metadata_customer_created_idx").on(t.customerId, t.createdAt),
    index("context_metadata_customer_image_key_idx").on(t.customerId, t.imageKey).where(sql`${t.imageKey} is not null`),
  ],
);

export type ContextMetadataRow = typeof contextMetadata.$inferSelect;
