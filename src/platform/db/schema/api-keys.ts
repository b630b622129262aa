import { sql } from "drizzle-orm";
import { index, pgTable, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";
import { users } from "./users.ts";

/**
 * API keys of a customer. Only the SHA-256 of the whole key is stored (hex, unique); the
 * plaintext is shown once. `revoked_at` in the future means "rotating": the key keeps working
 * until then, when its replacement (`replaced_by_id`) alone remains.
 */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    keyHash: text("key_hash").notNull(),
    /** `vla_live_` + the first 4 characters of the secret, to recognise a key in lists. */
    displayPrefix: text("display_prefix").notNull(),
    scopes: text("scopes").array().notNull().default(sql`'{inference}'::text[]`),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    replacedById: uuid("replaced_by_id"),
    createdByUserId: uuid("created_by_user_id").references(() => users.id, { onDelete: "set null" }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
    /** Inference defaults (null: none); `robot_id` binds the key to that robot. */
    robotId: text("robot_id"),
    model: text("model"),
    unnormKey: text("unnorm_key"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("api_keys_key_hash_key").on(t.keyHash), index("api_keys_customer_id_idx").on(t.customerId)],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type NewApiKeyRow = typeof apiKeys.$inferInsert;
