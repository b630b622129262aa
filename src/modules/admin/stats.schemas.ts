import { type Static, Type } from "typebox";

/** Wire schemas of `GET /admin/stats` and `GET /admin/stats/revenue`. */

export const StatsQuery = Type.Object(
  {
    limit: Type.Integer({
      minimum: 1,
      maximum: 100,
      default: 10,
      description: "How many top customers (by requests this month) to list: 1 to 100, default 10.",
    }),
  },
  { additionalProperties: false },
);
export type StatsQuery = Static<typeof StatsQuery>;

/** Routes that take no query parameters refuse any (400). */
export const RevenueQuery = Type.Object({}, { additionalProperties: false });

const Counts = Type.Object({
  requests: Type.Number(),
  errors: Type.Number(),
  error_rate: Type.Union([Type.Number(), Type.Null()], { description: "errors / requests; null without requests." }),
});
const Ms = Type.Union([Type.Number(), Type.Null()]);
const NullableTime = Type.Union([Type.String({ format: "date-time" }), Type.Null()]);

export const STATS_EXAMPLE = {
  generated_at: "2026-12-05T14:00:00.000Z",
  rollups: { watermark_at: "2026-12-05T13:59:58.120Z", updated_at: "2026-12-05T13:59:59.004Z" },
  users: 12480,
  customers: {
    total: 10000,
    by_tier: { free: 8200, pro: 1650, enterprise: 150 },
    new_7d: 140,
    new_30d: 610,
    active_24h: 2210,
    active_30d: 6120,
  },
  requests: {
    today: { requests: 162000, errors: 810, error_rate: 0.005 },
    month: { requests: 830000, errors: 4100, error_rate: 0.00494 },
  },
  latency_today_ms: { p50: 41.2, p95: 96.7, p99: 180.3 },
  top_customers: [
    {
      customer_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
      name: "Acme Robotics",
      email: "ops@acme.example",
      tier: "enterprise",
      requests_month: 91000,
    },
  ],
  incidents_today: { total: 37, by_severity: { low: 20, medium: 11, high: 5, critical: 1 } },
};

export const StatsSchema = Type.Object(
  {
    generated_at: Type.String({ format: "date-time" }),
    rollups: Type.Object(
      {
        watermark_at: Type.Union([NullableTime], {
          description: "`created_at` of the last inference log row counted in the rollups (null: none yet).",
        }),
        updated_at: Type.Union([NullableTime], { description: "When the analytics job last moved its watermark." }),
      },
      { description: "How fresh the rollup-based numbers are: logs after the watermark are not counted yet." },
    ),
    users: Type.Integer({ description: "Every user (members of every customer)." }),
    customers: Type.Object({
      total: Type.Integer(),
      by_tier: Type.Record(Type.String(), Type.Integer()),
      new_7d: Type.Integer({ description: "Created in the last 7 days." }),
      new_30d: Type.Integer({ description: "Created in the last 30 days." }),
      active_24h: Type.Integer({ description: "With requests in the hourly rollups of the last 24 hours." }),
      active_30d: Type.Integer({ description: "With requests in the daily rollups of the last 30 days (UTC)." }),
    }),
    requests: Type.Object({
      today: Type.Union([Counts], { description: "Since UTC midnight, from the hourly rollups." }),
      month: Type.Union([Counts], { description: "Since the first of the UTC month, from the daily rollups." }),
    }),
    latency_today_ms: Type.Object(
      { p50: Ms, p95: Ms, p99: Ms },
      { description: "End-to-end inference latency since UTC midnight, merged from the rollups' DDSketches (1 %)." },
    ),
    top_customers: Type.Array(
      Type.Object({
        customer_id: Type.String({ format: "uuid" }),
        name: Type.String(),
        email: Type.String(),
        tier: Type.String(),
        requests_month: Type.Number({ description: "The customer's durable monthly request counter." }),
      }),
      { description: "By requests this UTC month (the limiter's usage counters), most first; `limit` of them." },
    ),
    incidents_today: Type.Object({
      total: Type.Integer(),
      by_severity: Type.Record(Type.String(), Type.Integer()),
    }),
  },
  { examples: [STATS_EXAMPLE] },
);

const Movement = Type.Object({
  new: Type.Number({ description: "MRR of subscriptions that went from 0 to paying." }),
  expansion: Type.Number({ description: "Increases of subscriptions paying before and after." }),
  contraction: Type.Number({ description: "Decreases of subscriptions paying before and after." }),
  churned: Type.Number({ description: "MRR of subscriptions that stopped paying." }),
  net: Type.Number({ description: "new + expansion - contraction - churned." }),
});

export const REVENUE_EXAMPLE = {
  generated_at: "2026-12-05T14:00:00.000Z",
  window: { from: "2026-11-05T14:00:00.000Z", to: "2026-12-05T14:00:00.000Z" },
  currencies: [
    {
      currency: "usd",
      mrr: 4870000,
      arr: 58440000,
      subscriptions: 1800,
      by_tier: { pro: { mrr: 3270000, subscriptions: 1650 }, enterprise: { mrr: 1600000, subscriptions: 150 } },
      past_due: { mrr: 39000, subscriptions: 20 },
      movement_30d: { new: 180000, expansion: 25000, contraction: 4000, churned: 60000, net: 141000 },
    },
  ],
  unpriced_subscriptions: 0,
};

export const RevenueSchema = Type.Object(
  {
    generated_at: Type.String({ format: "date-time" }),
    window: Type.Object(
      { from: Type.String({ format: "date-time" }), to: Type.String({ format: "date-time" }) },
      { description: "The movement window: the last 30 days." },
    ),
    currencies: Type.Array(
      Type.Object({
        currency: Type.String({ description: "ISO 4217, lower case, as Stripe spells it." }),
        mrr: Type.Number({ description: "Monthly recurring revenue in minor units (cents)." }),
        arr: Type.Number({ description: "mrr x 12." }),
        subscriptions: Type.Integer({ description: "Subscriptions counted (active or past_due, amount > 0)." }),
        by_tier: Type.Record(Type.String(), Type.Object({ mrr: Type.Number(), subscriptions: Type.Integer() }), {
          description: "By the tier the price sells (`unknown` for a price not in STRIPE_PRICE_*).",
        }),
        past_due: Type.Object(
          { mrr: Type.Number(), subscriptions: Type.Integer() },
          { description: "MRR at risk: subscriptions in past_due (counted in mrr too)." },
        ),
        movement_30d: Movement,
      }),
      { description: "One entry per currency, largest MRR first; amounts are never converted." },
    ),
    unpriced_subscriptions: Type.Integer({
      description:
        "Customers with an active or past_due subscription whose amount was never recorded (subscribed before " +
        "revenue tracking): run `npm run cli -- billing-reconcile` once to record them.",
    }),
  },
  { examples: [REVENUE_EXAMPLE] },
);
