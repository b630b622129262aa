import { sql } from "drizzle-orm";
import {
  bigint,
  doublePrecision,
  index,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

/**
 * One row per inference request (REST, /act, stream frames, openpi), successful or failed
 * (except 401/403/429 rejections). PARTITIONED BY RANGE (created_at), one partition per UTC
 * month plus a DEFAULT partition: the partitioning is hand-written in
 * migrations/0003_inference_logs.sql (drizzle-kit does not model it); the monthly partitions
 * are created ahead by the inference module's partition job. The primary key must include the
 * partition key, hence (id, created_at). No foreign keys: the customer's logs are removed by
 * the deletion hook, and the hot insert path stays free of FK checks.
 */
export const inferenceLogs = pgTable(
  "inference_logs",
  {
    id: uuid("id").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    customerId: uuid("customer_id").notNull(),
    apiKeyId: uuid("api_key_id"),
    userId: uuid("user_id"),
    model: text("model").notNull(),
    backend: text("backend"),
    robotId: text("robot_id"),
    /** Stored only when LOG_INSTRUCTIONS and the customer's consent allow it; the hash is always kept. */
    instruction: text("instruction"),
    instructionSha256: text("instruction_sha256"),
    /** SHA-256 of the normalized instruction (trimmed, case-folded, whitespace collapsed): analytics groups by it. */
    instructionKey: text("instruction_key"),
    imageSha256: text("image_sha256"),
    action: jsonb("action").$type<number[]>(),
    actionChunk: jsonb("action_chunk").$type<number[][]>(),
    unnormKey: text("unnorm_key"),
    /** `ok` or `error`. */
    status: text("status").notNull(),
    errorCode: text("error_code"),
    preprocessMs: real("preprocess_ms"),
    queueMs: real("queue_ms"),
    modelMs: real("model_ms"),
    totalMs: doublePrecision("total_ms").notNull(),
    /** The safety verdict on the returned action: pass, clamped, rejected, emergency_stop, not_evaluated. */
    safetyStatus: text("safety_status"),
    /** `rest`, `act`, `stream` or `openpi`. */
    source: text("source").notNull(),
    /** The split experiment that chose this request's model (docs/experiments.md), and its variant's name. */
    experimentId: uuid("experiment_id"),
    variant: text("variant"),
    /**
     * The inserting transaction's id (xid8 as bigint): the analytics job reads rows in
     * (ingest_xid, id, created_at) order below the oldest transaction still running, so a row
     * committed late by a batch writer is never skipped (docs/architecture.md).
     */
    ingestXid: bigint("ingest_xid", { mode: "number" }).notNull().default(sql`(pg_current_xact_id()::text::bigint)`),
  },
  (t) => [
    primaryKey({ columns: [t.id, t.createdAt] }),
    index("inference_logs_customer_created_idx").on(t.customerId, t.createdAt.desc(), t.id.desc()),
    index("inference_logs_customer_robot_idx")
      .on(t.customerId, t.robotId, t.createdAt.desc())
      .where(sql`${t.robotId} is not null`),
    index("inference_logs_ingest_idx").on(t.ingestXid, t.id, t.createdAt),
    // GET /v1/experiments/{id}/results reads one experiment's rows.
    index("inference_logs_experiment_idx")
      .on(t.customerId, t.experimentId, t.variant)
      .where(sql`${t.experimentId} is not null`),
  ],
);

export type InferenceLogRow = typeof inferenceLogs.$inferSelect;
export type NewInferenceLogRow = typeof inferenceLogs.$inferInsert;
