import { bigint, date, index, pgTable, primaryKey, timestamp, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Durable monthly request counts per customer (UTC calendar month, `month` = its first day).
 * Written in batches by the limiter; seeds the month counter when Redis is cold or absent,
 * so losing Redis never resets a customer's month.
 */
export const usageCounters = pgTable(
  "usage_counters",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    month: date("month", { mode: "string" }).notNull(),
    requests: bigint("requests", { mode: "number" }).notNull().default(0),
    /** Stream session time (native and openpi) charged this month, in milliseconds. */
    streamMs: bigint("stream_ms", { mode: "number" }).notNull().default(0),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.customerId, t.month] }),
    // A month's totals and top customers over every customer (GET /admin/stats).
    index("usage_counters_month_requests_idx").on(t.month, t.requests, t.customerId),
  ],
);

export type UsageCounterRow = typeof usageCounters.$inferSelect;
