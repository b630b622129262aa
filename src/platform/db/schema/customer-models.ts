import { jsonb, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Models a customer registered itself (bring-your-own endpoint, docs/models.md): `definition` is
 * the registry-entry document as the customer sent it, validated again whenever an instance loads
 * it. A model id is unique per customer; another customer may use the same id for its own model.
 */
export const customerModels = pgTable(
  "customer_models",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    id: text("id").notNull(),
    definition: jsonb("definition").$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.customerId, t.id] })],
);

export type CustomerModelRow = typeof customerModels.$inferSelect;
