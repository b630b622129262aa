import { sql } from "drizzle-orm";
import { boolean, check, integer, pgEnum, pgTable, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

export const consentTierEnum = pgEnum("consent_tier", ["none", "basic", "analytics", "research"]);
export const anonymizationEnum = pgEnum("consent_anonymization", ["none", "partial", "full"]);

/**
 * What a customer allows us to keep (docs/privacy.md). Append-only: every change is a new
 * version (1, 2, ...), so "what did this customer allow on date X" is the last version granted
 * at or before X. A withdrawal is a version with tier `none` and `withdrawn` set. The rows go
 * with the customer (account deletion); only audit_log remembers that they existed.
 */
export const customerDataConsent = pgTable(
  "customer_data_consent",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    tier: consentTierEnum("tier").notNull(),
    storeInstructions: boolean("store_instructions").notNull(),
    storeImages: boolean("store_images").notNull(),
    storeEmbeddings: boolean("store_embeddings").notNull(),
    useForTraining: boolean("use_for_training").notNull(),
    anonymization: anonymizationEnum("anonymization").notNull().default("none"),
    retentionDays: integer("retention_days").notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    /** The session user who granted it; null for an API key with the admin scope (see grantedByApiKeyId). */
    grantedByUserId: uuid("granted_by_user_id"),
    grantedByApiKeyId: uuid("granted_by_api_key_id"),
    grantedAt: timestamp("granted_at", { withTimezone: true }).notNull(),
    /** The client IP of the request that wrote this version. */
    ip: text("ip"),
    /** Which text of the privacy policy the customer agreed to (an id such as `2026-12-01`). */
    policyVersion: text("policy_version").notNull(),
    withdrawn: boolean("withdrawn").notNull().default(false),
  },
  (t) => [
    uniqueIndex("customer_data_consent_customer_version_key").on(t.customerId, t.version),
    check("customer_data_consent_retention_days_check", sql`${t.retentionDays} between 1 and 3650`),
    check("customer_data_consent_version_check", sql`${t.version} >= 1`),
  ],
);

export type ConsentRow = typeof customerDataConsent.$inferSelect;
export type NewConsentRow = typeof customerDataConsent.$inferInsert;
