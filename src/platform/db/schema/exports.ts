import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Account exports (GDPR Art. 15/20, docs/privacy.md "Export"): one row per requested archive.
 * `status`: queued, running, done, failed, expired (the archive was deleted after `expires_at`).
 * `progress` holds rows written per section name. Exactly one of `created_by_user_id` and
 * `created_by_api_key_id` is set: only that user (or key) may download the archive.
 */
export const accountExports = pgTable(
  "account_exports",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    status: text("status").notNull().default("queued"),
    progress: jsonb("progress").$type<Record<string, number>>().notNull().default({}),
    createdByUserId: uuid("created_by_user_id"),
    createdByApiKeyId: uuid("created_by_api_key_id"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp("started_at", { withTimezone: true }),
    /** Bumped while the job runs; a running job whose heartbeat stopped belongs to a dead process. */
    heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    /** The archive, relative to DATA_DIR/exports; null until done and after deletion. */
    filePath: text("file_path"),
    sizeBytes: bigint("size_bytes", { mode: "number" }),
    error: text("error"),
    downloadedAt: timestamp("downloaded_at", { withTimezone: true }),
  },
  (t) => [
    index("account_exports_customer_created_idx").on(t.customerId, t.createdAt),
    index("account_exports_status_idx").on(t.status),
    // One queued or running export per customer, across instances: a second request is 409.
    uniqueIndex("account_exports_one_active_key").on(t.customerId).where(sql`${t.status} in ('queued', 'running')`),
  ],
);

export type AccountExportRow = typeof accountExports.$inferSelect;
