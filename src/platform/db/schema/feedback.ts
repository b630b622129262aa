import { sql } from "drizzle-orm";
import {
  bigint,
  doublePrecision,
  index,
  jsonb,
  pgTable,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Ground truth from the field: what a robot team says about one inference (docs/feedback.md).
 * `type` is success, safety, correction or failure; the columns that do not belong to a type are
 * null. The inference is referenced by id and its created_at (inference_logs is partitioned; no
 * foreign key), its robot and model copied so analytics need no join.
 */
export const feedback = pgTable(
  "feedback",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    inferenceId: uuid("inference_id").notNull(),
    inferenceCreatedAt: timestamp("inference_created_at", { withTimezone: true }).notNull(),
    robotId: text("robot_id"),
    model: text("model").notNull(),
    source: text("source"),
    /** Who sent it: an API key (robots report outcomes themselves) or a user session. */
    apiKeyId: uuid("api_key_id"),
    userId: uuid("user_id"),
    type: text("type").notNull(),
    /** 1-5 for success and safety feedback. */
    rating: smallint("rating"),
    /** safety: collision, near_miss, unexpected_motion, workspace_exit, other. */
    observedIssue: text("observed_issue"),
    /** failure: grasp_failed, wrong_object, timeout, dropped_object, collision, other. */
    failureType: text("failure_type"),
    /** failure: low, medium, high, critical. */
    severity: text("severity"),
    comment: text("comment"),
    description: text("description"),
    /** correction: the corrected 7-DoF action (or chunk) and the model's, side by side. */
    correctedAction: jsonb("corrected_action").$type<number[] | number[][]>(),
    modelAction: jsonb("model_action").$type<number[] | number[][]>(),
    /**
     * correction: L2 distance between corrected and model action per part: translation (dims 0-2),
     * rotation (3-5), gripper (6); chunks: the mean over steps. Double precision (0010) so the
     * stored figure is the one computed.
     */
    errorTranslation: doublePrecision("error_translation"),
    errorRotation: doublePrecision("error_rotation"),
    errorGripper: doublePrecision("error_gripper"),
    /** The client's Idempotency-Key (a retried POST returns the first result). */
    idempotencyKey: text("idempotency_key"),
    /**
     * SHA-256 of the request (route type and canonical body) that used the idempotency key: a
     * retry with another body under the same key is refused (422 idempotency_key_reused).
     */
    requestHash: text("request_hash"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    /** The inserting transaction's id: the analytics job's watermark (see inference_logs.ingest_xid). */
    ingestXid: bigint("ingest_xid", { mode: "number" }).notNull().default(sql`(pg_current_xact_id()::text::bigint)`),
  },
  (t) => [
    index("feedback_customer_created_idx").on(t.customerId, t.createdAt.desc(), t.id.desc()),
    index("feedback_customer_inference_idx").on(t.customerId, t.inferenceId),
    uniqueIndex("feedback_customer_idempotency_key")
      .on(t.customerId, t.idempotencyKey)
      .where(sql`${t.idempotencyKey} is not null`),
    index("feedback_ingest_idx").on(t.ingestXid, t.id),
  ],
);

export type FeedbackRow = typeof feedback.$inferSelect;
export type NewFeedbackRow = typeof feedback.$inferInsert;
