import { bigint, date, index, integer, pgTable, primaryKey, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * Every Stripe webhook event applied (or deliberately ignored), recorded in the same transaction
 * as its effects: a redelivery finds its id and changes nothing. `customer_id` has no foreign key
 * so the record of payment events outlives nothing it should not: erasure nulls it.
 */
export const stripeEvents = pgTable(
  "stripe_events",
  {
    id: text("id").primaryKey(),
    type: text("type").notNull(),
    /** Stripe's `created` for the event. */
    createdAt: timestamp("created_at", { withTimezone: true }).notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
    /** applied, ignored (nothing of ours), unknown_type, unknown_price, stale. */
    outcome: text("outcome").notNull(),
    customerId: uuid("customer_id"),
  },
  (t) => [
    index("stripe_events_received_at_idx").on(t.receivedAt),
    index("stripe_events_customer_idx").on(t.customerId),
  ],
);

/**
 * Stripe calls that must happen but must not block what caused them (erasure cancels the
 * subscription and deletes the Stripe customer): written in the caller's transaction, retried by
 * the billing job with backoff until done. Holds Stripe ids only, no personal data.
 */
export const billingOutbox = pgTable(
  "billing_outbox",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** `erase_customer`: cancel `stripe_subscription_id` (if any) now, then delete `stripe_customer_id`. */
    kind: text("kind").notNull(),
    stripeCustomerId: text("stripe_customer_id"),
    stripeSubscriptionId: text("stripe_subscription_id"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }).notNull().defaultNow(),
    lastError: text("last_error"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    doneAt: timestamp("done_at", { withTimezone: true }),
  },
  (t) => [index("billing_outbox_due_idx").on(t.doneAt, t.nextAttemptAt)],
);

/**
 * Overage reported to Stripe Billing Meters per customer, billing month and meter (`requests`,
 * `stream_seconds`). A report is first written as pending (`pending_to`, `pending_identifier`),
 * then sent with that identifier, then acknowledged (`reported = pending_to`): a crash in between
 * resends the same identifier, which Stripe de-duplicates, so every unit is reported exactly once.
 */
export const billingMeterReports = pgTable(
  "billing_meter_reports",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    period: date("period", { mode: "string" }).notNull(),
    meter: text("meter").notNull(),
    reported: bigint("reported", { mode: "number" }).notNull().default(0),
    pendingTo: bigint("pending_to", { mode: "number" }),
    pendingIdentifier: text("pending_identifier"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.customerId, t.period, t.meter] })],
);

/** Quota alert emails sent (80 % and 100 % of the included quota), at most one per period, meter and threshold. */
export const billingUsageAlerts = pgTable(
  "billing_usage_alerts",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    period: date("period", { mode: "string" }).notNull(),
    meter: text("meter").notNull(),
    threshold: integer("threshold").notNull(),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.customerId, t.period, t.meter, t.threshold] })],
);

/**
 * Append-only history of each customer's subscription as it counts for revenue: one row whenever
 * the webhook or reconciliation changes its price, quantity, status or tier, written in the same
 * transaction as the customer row. `mrr_before` / `mrr_after` are the monthly recurring revenue
 * of the subscription before and after, in minor units of `currency_before` / `currency_after`
 * (docs/admin.md, "Revenue"). The latest row of a customer is its current MRR. Erasure deletes
 * the customer's rows with it.
 */
export const subscriptionChanges = pgTable(
  "subscription_changes",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    /** webhook, reconcile or stripe_customer_deleted. */
    source: text("source").notNull(),
    stripeSubscriptionId: text("stripe_subscription_id"),
    stripePriceId: text("stripe_price_id"),
    /** Stripe's status after the change; null once the Stripe customer is gone. */
    status: text("status"),
    /** The tier the price sells (pro, enterprise); null for a price not configured. */
    priceTier: text("price_tier"),
    unitAmount: bigint("unit_amount", { mode: "number" }),
    quantity: integer("quantity").notNull().default(1),
    /** day, week, month or year, every `interval_count`. */
    interval: text("interval"),
    intervalCount: integer("interval_count").notNull().default(1),
    mrrBefore: bigint("mrr_before", { mode: "number" }).notNull(),
    currencyBefore: text("currency_before"),
    mrrAfter: bigint("mrr_after", { mode: "number" }).notNull(),
    currencyAfter: text("currency_after"),
  },
  (t) => [
    index("subscription_changes_customer_at_idx").on(t.customerId, t.at),
    index("subscription_changes_at_idx").on(t.at),
  ],
);

export type StripeEventRow = typeof stripeEvents.$inferSelect;
export type BillingOutboxRow = typeof billingOutbox.$inferSelect;
export type BillingMeterReportRow = typeof billingMeterReports.$inferSelect;
export type SubscriptionChangeRow = typeof subscriptionChanges.$inferSelect;
