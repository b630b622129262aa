import { type Static, type TSchema, Type } from "typebox";

const Nullable = <T extends TSchema>(t: T, description?: string) =>
  Type.Union([t, Type.Null()], description === undefined ? {} : { description });
const Instant = Type.String({ format: "date-time" });
const Uuid = Type.String({ format: "uuid" });
const TierSchema = Type.Union([Type.Literal("free"), Type.Literal("pro"), Type.Literal("enterprise")], {
  description: "The customer's tier: `free`, `pro` or `enterprise`.",
});

export const CustomerParams = Type.Object(
  { customer_id: Type.String({ format: "uuid", description: "The customer's id." }) },
  { additionalProperties: false },
);
export type CustomerParams = Static<typeof CustomerParams>;

export const CustomerListQuery = Type.Object(
  {
    q: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: "Case-insensitive substring of the customer's email, name or company.",
        examples: ["acme"],
      }),
    ),
    tier: Type.Optional(TierSchema),
    status: Type.Optional(
      Type.Union([Type.Literal("active"), Type.Literal("suspended")], {
        description: "`suspended`: suspended by an operator; `active`: every other customer.",
      }),
    ),
    sort: Type.Union([Type.Literal("created_at"), Type.Literal("requests_30d"), Type.Literal("mrr")], {
      default: "created_at",
      description:
        "`created_at` (sign-up), `requests_30d` (requests over the last 30 days, refreshed every minute from the " +
        "analytics rollups) or `mrr` (monthly recurring revenue in the price's smallest currency unit).",
    }),
    order: Type.Union([Type.Literal("asc"), Type.Literal("desc")], { default: "desc", description: "Default `desc`." }),
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 25, description: "Page size (1 to 100, default 25)." }),
    cursor: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 300,
        description: "Opaque `next_cursor` of the previous page, valid with the same `sort` and `order` only.",
      }),
    ),
  },
  { additionalProperties: false },
);
export type CustomerListQuery = Static<typeof CustomerListQuery>;

const Subscription = Type.Object({
  status: Nullable(Type.String(), "Stripe's status of the current subscription; null: never subscribed."),
  price_id: Nullable(Type.String()),
  mrr: Type.Integer({
    description: "Monthly recurring revenue in the smallest currency unit (0 unless active or past due).",
  }),
  currency: Nullable(Type.String()),
  interval: Nullable(Type.String(), "`month` or `year`."),
  current_period_end: Nullable(Instant),
  cancel_at_period_end: Type.Boolean(),
  grace_until: Nullable(Instant, "While past due: the paid tier stays until then."),
  synced_at: Nullable(Instant, "When the subscription was last applied from Stripe."),
});

const Suspension = Nullable(
  Type.Object({ at: Instant, reason: Nullable(Type.String()) }),
  "Set while an operator has suspended the customer; null: active.",
);

const CustomerSummarySchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  email: Type.String(),
  company: Nullable(Type.String()),
  tier: TierSchema,
  created_at: Instant,
  status: Type.Union([Type.Literal("active"), Type.Literal("suspended")]),
  suspended: Suspension,
  subscription_status: Nullable(Type.String()),
  mrr: Type.Integer(),
  currency: Nullable(Type.String()),
  members: Type.Integer({ description: "Users of the customer." }),
  active_keys: Type.Integer({ description: "API keys neither revoked nor expired." }),
  requests_this_month: Type.Integer({ description: "The limiter's durable count for the current UTC month." }),
  requests_30d: Type.Integer({ description: "Requests over the last 30 days as of the last refresh (every minute)." }),
  last_activity_at: Nullable(Instant, "The latest API key use or member sign-in."),
});
export type CustomerSummaryJson = Static<typeof CustomerSummarySchema>;

const EXAMPLE_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
const EXAMPLE_SUMMARY: CustomerSummaryJson = {
  id: EXAMPLE_ID,
  name: "Acme Robotics",
  email: "ops@acme.example",
  company: "Acme Robotics GmbH",
  tier: "pro",
  created_at: "2026-10-01T09:00:00.000Z",
  status: "active",
  suspended: null,
  subscription_status: "active",
  mrr: 4900,
  currency: "usd",
  members: 3,
  active_keys: 2,
  requests_this_month: 48210,
  requests_30d: 61544,
  last_activity_at: "2026-12-05T23:59:12.000Z",
};

export const CustomerListSchema = Type.Object(
  {
    data: Type.Array(CustomerSummarySchema),
    next_cursor: Nullable(
      Type.String(),
      "Pass back as `cursor` (same sort and order) for the next page; null at the end.",
    ),
  },
  {
    examples: [
      {
        data: [EXAMPLE_SUMMARY],
        next_cursor:
          "WyJjcmVhdGVkX2F0IiwiZGVzYyIsIjIwMjYtMTAtMDFUMDk6MDA6MDAuMDAwWiIsIjlhOGI3YzZkLTVlNGYtNGEzYi05YzJkLTFlMGY5YThiN2M2ZCJd",
      },
    ],
  },
);

const LimitSet = Type.Object({
  rate_limit_per_minute: Nullable(Type.Integer()),
  quota_per_day: Nullable(Type.Integer()),
  quota_per_month: Nullable(Type.Integer()),
});

export const LimitsSchema = Type.Object({
  tier_defaults: LimitSet,
  overrides: Type.Object(LimitSet.properties, { description: "null: the tier default applies." }),
  effective: Type.Object({
    ...LimitSet.properties,
    overage_cap_requests: Nullable(
      Type.Integer(),
      "Requests allowed past the month quota while metered overage is on.",
    ),
  }),
});

const EXAMPLE_LIMITS = {
  tier_defaults: { rate_limit_per_minute: 100, quota_per_day: 10000, quota_per_month: 100000 },
  overrides: { rate_limit_per_minute: 300, quota_per_day: null, quota_per_month: null },
  effective: { rate_limit_per_minute: 300, quota_per_day: 10000, quota_per_month: 100000, overage_cap_requests: null },
};

const DayUsage = Type.Object({ requests: Type.Integer(), errors: Type.Integer() });

export const CustomerDetailSchema = Type.Object(
  {
    customer: Type.Object({
      ...CustomerSummarySchema.properties,
      updated_at: Instant,
      stripe_customer_id: Nullable(Type.String()),
    }),
    members: Type.Array(
      Type.Object({
        id: Uuid,
        email: Type.String(),
        full_name: Nullable(Type.String()),
        role: Type.String(),
        is_superuser: Type.Boolean(),
        is_active: Type.Boolean(),
        email_verified_at: Nullable(Instant),
        last_login_at: Nullable(Instant),
        created_at: Instant,
      }),
      { description: "Never password data." },
    ),
    keys: Type.Array(
      Type.Object({
        id: Uuid,
        name: Type.String(),
        prefix: Type.String(),
        scopes: Type.Array(Type.String()),
        robot_id: Nullable(Type.String()),
        status: Type.Union([Type.Literal("active"), Type.Literal("revoked"), Type.Literal("expired")]),
        expires_at: Nullable(Instant),
        revoked_at: Nullable(Instant),
        last_used_at: Nullable(Instant),
        created_at: Instant,
      }),
      { description: "Metadata only: never the key or its hash." },
    ),
    limits: LimitsSchema,
    usage: Type.Object({
      today: DayUsage,
      month: Type.Object({ requests: Type.Integer(), stream_seconds: Type.Integer() }),
      last_30_days: Type.Array(Type.Object({ day: Type.String({ format: "date" }), ...DayUsage.properties }), {
        description: "Oldest first, one entry per UTC day, today last.",
      }),
    }),
    subscription: Subscription,
    invoices: Type.Object(
      {
        past_due: Type.Boolean({ description: "An invoice is unpaid (subscription `past_due` or `unpaid`)." }),
        latest_synced_at: Nullable(Instant),
      },
      {
        description:
          "What billing stores about invoices: their payment state on the subscription. Invoice documents live in " +
          "Stripe and are listed by the customer's `GET /v1/billing/invoices`; this route never calls Stripe.",
      },
    ),
    emergency_stops: Type.Array(
      Type.Object({
        robot_id: Type.String(),
        at: Type.String(),
        reason: Type.String(),
        inference_id: Nullable(Type.String()),
      }),
    ),
    incidents_by_severity: Type.Record(Type.String(), Type.Integer(), {
      description: "Safety incidents kept (retention applies) by severity: low, medium, high, critical.",
    }),
    consent: Type.Object({
      state: Type.String({ description: "`default` (no record), `active`, `withdrawn` or `expired`." }),
      tier: Type.String({ description: "The consent tier that applies now." }),
      version: Nullable(Type.Integer()),
      policy_version: Nullable(Type.String()),
      granted_at: Nullable(Instant),
      expires_at: Nullable(Instant),
      withdrawn: Type.Boolean(),
    }),
  },
  {
    examples: [
      {
        customer: { ...EXAMPLE_SUMMARY, updated_at: "2026-12-01T10:00:00.000Z", stripe_customer_id: "cus_Q1w2E3r4" },
        members: [
          {
            id: "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b",
            email: "ops@acme.example",
            full_name: "Ada Ops",
            role: "owner",
            is_superuser: false,
            is_active: true,
            email_verified_at: "2026-10-01T09:05:00.000Z",
            last_login_at: "2026-12-05T08:00:00.000Z",
            created_at: "2026-10-01T09:00:00.000Z",
          },
        ],
        keys: [
          {
            id: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
            name: "arm-1",
            prefix: "vla_live_Ab3x",
            scopes: ["inference"],
            robot_id: "arm-1",
            status: "active",
            expires_at: null,
            revoked_at: null,
            last_used_at: "2026-12-05T23:59:12.000Z",
            created_at: "2026-10-02T09:00:00.000Z",
          },
        ],
        limits: EXAMPLE_LIMITS,
        usage: {
          today: { requests: 1200, errors: 3 },
          month: { requests: 48210, stream_seconds: 5400 },
          last_30_days: [{ day: "2026-12-06", requests: 1200, errors: 3 }],
        },
        subscription: {
          status: "active",
          price_id: "price_pro_monthly",
          mrr: 4900,
          currency: "usd",
          interval: "month",
          current_period_end: "2027-01-01T00:00:00.000Z",
          cancel_at_period_end: false,
          grace_until: null,
          synced_at: "2026-12-01T00:00:03.000Z",
        },
        invoices: { past_due: false, latest_synced_at: "2026-12-01T00:00:03.000Z" },
        emergency_stops: [],
        incidents_by_severity: { low: 4, medium: 1, high: 0, critical: 0 },
        consent: {
          state: "active",
          tier: "analytics",
          version: 2,
          policy_version: "2026-12-01",
          granted_at: "2026-12-01T10:00:00.000Z",
          expires_at: null,
          withdrawn: false,
        },
      },
    ],
  },
);
export type CustomerDetailJson = Static<typeof CustomerDetailSchema>;

export const TierBody = Type.Object(
  {
    tier: TierSchema,
    reason: Type.String({ minLength: 1, maxLength: 500, description: "Why (kept in the audit log)." }),
  },
  { additionalProperties: false, examples: [{ tier: "enterprise", reason: "signed annual contract #4411" }] },
);
export type TierBody = Static<typeof TierBody>;

const LimitValue = (description: string) =>
  Type.Optional(
    Type.Union([Type.Integer({ minimum: 0, maximum: 2_000_000_000 }), Type.Null()], {
      description: `${description} null resets it to the tier default.`,
    }),
  );

export const LimitsBody = Type.Object(
  {
    rate_limit_per_minute: LimitValue("Requests per minute."),
    quota_per_day: LimitValue("Requests per UTC day."),
    quota_per_month: LimitValue("Included requests per UTC month."),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ rate_limit_per_minute: 300, quota_per_day: null }],
  },
);
export type LimitsBody = Static<typeof LimitsBody>;

export const TierChangeSchema = Type.Object(
  { customer_id: Uuid, from: TierSchema, tier: TierSchema, limits: LimitsSchema },
  { examples: [{ customer_id: EXAMPLE_ID, from: "pro", tier: "enterprise", limits: EXAMPLE_LIMITS }] },
);

export const LimitsChangeSchema = Type.Object(
  { customer_id: Uuid, tier: TierSchema, limits: LimitsSchema },
  { examples: [{ customer_id: EXAMPLE_ID, tier: "pro", limits: EXAMPLE_LIMITS }] },
);
