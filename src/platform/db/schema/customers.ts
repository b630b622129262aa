import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  index,
  integer,
  pgEnum,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export const tierEnum = pgEnum("customer_tier", ["free", "pro", "enterprise"]);

/** A paying account. Limits and quotas belong here; every user and API key belongs to one. */
export const customers = pgTable(
  "customers",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    name: text("name").notNull(),
    email: text("email").notNull(),
    company: text("company"),
    tier: tierEnum("tier").notNull().default("free"),
    /** Per-customer overrides of the tier's limits; null means "use the tier default". */
    rateLimitPerMinute: integer("rate_limit_per_minute"),
    quotaPerDay: integer("quota_per_day"),
    quotaPerMonth: integer("quota_per_month"),
    /** Overrides of the tier's stream-time allowances (robot-seconds) and per-session frame-rate ceiling. */
    streamSecondsPerDay: integer("stream_seconds_per_day"),
    streamSecondsPerMonth: integer("stream_seconds_per_month"),
    streamMaxFps: integer("stream_max_fps"),
    stripeCustomerId: text("stripe_customer_id"),
    stripeSubscriptionId: text("stripe_subscription_id"),
    /** Stripe's status of the current subscription (`active`, `past_due`, ...); null: never subscribed. */
    subscriptionStatus: text("subscription_status"),
    stripePriceId: text("stripe_price_id"),
    /** The subscription price's unit amount in the currency's smallest unit (Stripe's `unit_amount`); null: none or metered. */
    subscriptionUnitAmount: bigint("subscription_unit_amount", { mode: "number" }),
    /** ISO currency of that price, lower case (`usd`). */
    subscriptionCurrency: text("subscription_currency"),
    /** `month` or `year`. */
    subscriptionInterval: text("subscription_interval"),
    /**
     * Monthly recurring revenue of the subscription in the smallest currency unit, written with the
     * subscription fields by the same function that computes the revenue history
     * (`monthlyAmount` in src/modules/billing/subscription-changes.ts: unit amount x quantity x
     * intervals per month / interval count, 0 unless active or past due), so the admin list and
     * `/admin/stats/revenue` always agree; indexed for the admin list's `sort=mrr`.
     */
    mrrMinor: bigint("mrr_minor", { mode: "number" }).notNull().default(0),
    currentPeriodStart: timestamp("current_period_start", { withTimezone: true }),
    currentPeriodEnd: timestamp("current_period_end", { withTimezone: true }),
    cancelAtPeriodEnd: boolean("cancel_at_period_end").notNull().default(false),
    /** While past due: the paid tier stays until this instant, then the billing job drops it to free. */
    graceUntil: timestamp("grace_until", { withTimezone: true }),
    /** When the subscription fields were last applied from Stripe. */
    subscriptionSyncedAt: timestamp("subscription_synced_at", { withTimezone: true }),
    /** Metered overage opt-in (Pro): serve past the monthly quota up to the caps, billed per unit. */
    overageEnabled: boolean("overage_enabled").notNull().default(false),
    /** Requests allowed beyond the monthly quota while overage is on. */
    overageCapRequests: integer("overage_cap_requests"),
    /** Stream robot-seconds allowed beyond the monthly stream allowance while overage is on. */
    overageCapStreamSeconds: integer("overage_cap_stream_seconds"),
    /** Set by an operator (`POST /admin/customers/{id}/suspend`): keys and sessions stop working at once. Null: active. */
    suspendedAt: timestamp("suspended_at", { withTimezone: true }),
    /** The operator's reason, shown to the customer's members on sign-in. */
    suspendedReason: text("suspended_reason"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("customers_email_lower_key").on(sql`lower(${t.email})`),
    uniqueIndex("customers_stripe_customer_id_key").on(t.stripeCustomerId),
    index("customers_created_at_idx").on(t.createdAt),
    index("customers_grace_until_idx").on(t.graceUntil),
    index("customers_mrr_minor_id_idx").on(t.mrrMinor, t.id),
    index("customers_created_at_id_idx").on(t.createdAt, t.id),
  ],
);

export type CustomerRow = typeof customers.$inferSelect;
export type NewCustomerRow = typeof customers.$inferInsert;
