import { bigint, index, pgTable, timestamp, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Per-customer figures the admin customer list sorts by that would cost a scan to compute per
 * request: requests over the last 30 days (summed from `usage_hourly_metrics`). Refreshed for
 * every customer by the admin module's job (src/modules/admin/customers.repo.ts,
 * `refreshMetrics`); a customer without a row counts as 0. docs/architecture.md, "Admin customer list".
 */
export const customerAdminMetrics = pgTable(
  "customer_admin_metrics",
  {
    customerId: uuid("customer_id")
      .primaryKey()
      .references(() => customers.id, { onDelete: "cascade" }),
    requests30d: bigint("requests_30d", { mode: "number" }).notNull().default(0),
    refreshedAt: timestamp("refreshed_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("customer_admin_metrics_requests_30d_idx").on(t.requests30d, t.customerId)],
);

export type CustomerAdminMetricsRow = typeof customerAdminMetrics.$inferSelect;
