import { index, jsonb, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

/**
 * Who did what, when. Never the content or a secret: ids, action names, changed field names and
 * non-secret values such as tier names (for a deletion, `details` holds row counts per table).
 * No foreign keys: entries outlive the users and customers they mention, and account erasure
 * keeps them. Written through `recordAudit` (platform/audit.ts); append-only (a trigger refuses
 * UPDATE, DELETE and TRUNCATE; docs/privacy.md, "Audit log"). `action` is a dotted verb such as
 * `account.delete` or `api_key.create`.
 */
export const auditLog = pgTable(
  "audit_log",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    // Millisecond precision, like the JS Dates that page through it (a cursor holds one).
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    actorUserId: uuid("actor_user_id"),
    actorCustomerId: uuid("actor_customer_id"),
    /** The API key that acted (a key with the `admin` scope), else null. */
    actorApiKeyId: uuid("actor_api_key_id"),
    /** The customer this entry is about (whose data was read or changed); null for server-wide entries. */
    customerId: uuid("customer_id"),
    action: text("action").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id"),
    requestId: text("request_id"),
    /** The client's address as the server saw it (behind TRUST_PROXY, the forwarded one); null for jobs. */
    ip: text("ip"),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [
    index("audit_log_at_idx").on(t.at),
    index("audit_log_target_idx").on(t.targetType, t.targetId),
    index("audit_log_customer_at_idx").on(t.customerId, t.at, t.id),
    index("audit_log_actor_customer_at_idx").on(t.actorCustomerId, t.at, t.id),
  ],
);

export type AuditLogRow = typeof auditLog.$inferSelect;
export type NewAuditLogRow = typeof auditLog.$inferInsert;
