import { type Static, Type } from "typebox";

const redirectUrl = (description: string) =>
  Type.String({
    format: "uri",
    maxLength: 2048,
    description: `${description} Must be an http(s) URL on PUBLIC_BASE_URL's origin or one of BILLING_REDIRECT_ORIGINS (else 400 redirect_not_allowed).`,
  });

export const CheckoutBody = Type.Object(
  {
    tier: Type.Union([Type.Literal("pro"), Type.Literal("enterprise")], { description: "The plan to buy." }),
    success_url: Type.Optional(
      redirectUrl("Where Stripe sends the customer after paying; default `<PUBLIC_BASE_URL>/billing/success`."),
    ),
    cancel_url: Type.Optional(
      redirectUrl("Where Stripe sends the customer on cancel; default `<PUBLIC_BASE_URL>/billing/cancel`."),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      { tier: "pro" },
      {
        tier: "enterprise",
        success_url: "https://app.example.com/billing/done",
        cancel_url: "https://app.example.com/billing",
      },
    ],
  },
);
export type CheckoutBody = Static<typeof CheckoutBody>;

export const CheckoutSchema = Type.Object(
  {
    url: Type.String({ description: "Stripe Checkout page; redirect the customer's browser here." }),
    session_id: Type.String({ description: "The Checkout Session id (cs_...)." }),
  },
  {
    examples: [{ url: "https://checkout.stripe.com/c/pay/cs_test_a1B2c3", session_id: "cs_test_a1B2c3" }],
  },
);

export const PortalBody = Type.Object(
  { return_url: Type.Optional(redirectUrl("Where the portal's back link goes; default `<PUBLIC_BASE_URL>/billing`.")) },
  { additionalProperties: false, examples: [{ return_url: "https://app.example.com/billing" }] },
);
export type PortalBody = Static<typeof PortalBody>;
export const PortalQuery = PortalBody;

export const PortalSchema = Type.Object(
  { url: Type.String({ description: "Stripe Billing Portal session; redirect the customer's browser here." }) },
  { examples: [{ url: "https://billing.stripe.com/p/session/test_YWNjdF8x" }] },
);

const nullableDate = (description: string) =>
  Type.Union([Type.String({ format: "date-time" }), Type.Null()], { description });

const InvoiceSchema = Type.Object({
  id: Type.String(),
  number: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.String(), Type.Null()], { description: "draft, open, paid, uncollectible or void." }),
  amount_due: Type.Integer({ description: "Smallest currency unit (cents)." }),
  amount_paid: Type.Integer(),
  currency: Type.String(),
  created: Type.String({ format: "date-time" }),
  period_start: nullableDate("Start of the billed period."),
  period_end: nullableDate("End of the billed period."),
  hosted_invoice_url: Type.Union([Type.String(), Type.Null()], { description: "Stripe's page to view and pay it." }),
  invoice_pdf: Type.Union([Type.String(), Type.Null()]),
});

const invoiceExample = {
  id: "in_1Pq2Rs",
  number: "VLA-0042",
  status: "paid",
  amount_due: 4900,
  amount_paid: 4900,
  currency: "usd",
  created: "2026-12-01T00:00:04.000Z",
  period_start: "2026-11-01T00:00:00.000Z",
  period_end: "2026-12-01T00:00:00.000Z",
  hosted_invoice_url: "https://invoice.stripe.com/i/acct_1/test_YWNj",
  invoice_pdf: "https://pay.stripe.com/invoice/acct_1/test_YWNj/pdf",
};

const MeterUsageSchema = Type.Object({
  used: Type.Integer({ description: "Used this quota period (UTC calendar month)." }),
  included: Type.Union([Type.Integer(), Type.Null()], {
    description: "Included in the tier (or the customer's override); null: unlimited.",
  }),
  overage: Type.Integer({ description: "Used beyond `included` (billed when overage is on)." }),
  overage_cap: Type.Union([Type.Integer(), Type.Null()], {
    description: "Most overage allowed this period; null when overage is off.",
  }),
});

export const SubscriptionSchema = Type.Object(
  {
    customer_id: Type.String({ format: "uuid" }),
    tier: Type.Union([Type.Literal("free"), Type.Literal("pro"), Type.Literal("enterprise")]),
    status: Type.Union(
      [
        Type.Literal("none"),
        Type.Literal("trialing"),
        Type.Literal("active"),
        Type.Literal("past_due"),
        Type.Literal("canceled"),
        Type.Literal("unpaid"),
        Type.Literal("paused"),
        Type.Literal("incomplete"),
      ],
      { description: "The subscription's state as Stripe last reported it; `none` before the first checkout." },
    ),
    current_period_start: nullableDate("Billing period start (Stripe)."),
    current_period_end: nullableDate("Billing period end: renewal, or the end of service when `cancel_at_period_end`."),
    cancel_at_period_end: Type.Boolean(),
    price: Type.Union(
      [
        Type.Object({
          id: Type.String(),
          amount: Type.Union([Type.Integer(), Type.Null()], { description: "Per interval, smallest currency unit." }),
          currency: Type.String(),
          interval: Type.Union([Type.String(), Type.Null()]),
        }),
        Type.Null(),
      ],
      { description: "The subscribed price; null without a subscription." },
    ),
    grace_until: nullableDate("While past due: the paid tier stays until then, then drops to free."),
    usage: Type.Object(
      {
        period_start: Type.String({ format: "date-time" }),
        period_end: Type.String({ format: "date-time" }),
        requests: MeterUsageSchema,
        stream_seconds: MeterUsageSchema,
      },
      { description: "This quota period's usage against the included quota (the limiter's UTC calendar month)." },
    ),
    overage: Type.Object({
      enabled: Type.Boolean(),
      reported_requests: Type.Integer({ description: "Overage requests already reported to Stripe this period." }),
      reported_stream_seconds: Type.Integer(),
    }),
    last_invoice: Type.Union([InvoiceSchema, Type.Null()]),
    last_invoice_unavailable: Type.Optional(
      Type.Boolean({ description: "True when Stripe could not be asked for the last invoice just now." }),
    ),
  },
  {
    examples: [
      {
        customer_id: "0b6c7f5e-6a0e-4f3c-9d59-2f3f2a8f4c11",
        tier: "pro",
        status: "active",
        current_period_start: "2026-12-01T00:00:00.000Z",
        current_period_end: "2027-01-01T00:00:00.000Z",
        cancel_at_period_end: false,
        price: { id: "price_pro_monthly", amount: 4900, currency: "usd", interval: "month" },
        grace_until: null,
        usage: {
          period_start: "2026-12-01T00:00:00.000Z",
          period_end: "2027-01-01T00:00:00.000Z",
          requests: { used: 81234, included: 100000, overage: 0, overage_cap: 50000 },
          stream_seconds: { used: 36000, included: 720000, overage: 0, overage_cap: null },
        },
        overage: { enabled: true, reported_requests: 0, reported_stream_seconds: 0 },
        last_invoice: invoiceExample,
      },
    ],
  },
);
export type SubscriptionView = Static<typeof SubscriptionSchema>;
export type InvoiceView = Static<typeof InvoiceSchema>;

export const InvoicesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20, description: "Page size (1-100)." })),
    starting_after: Type.Optional(
      Type.String({
        pattern: "^in_[A-Za-z0-9_]{1,250}$",
        description: "Cursor: the last invoice id of the previous page.",
      }),
    ),
  },
  { additionalProperties: false },
);
export type InvoicesQuery = Static<typeof InvoicesQuery>;

export const InvoiceListSchema = Type.Object(
  {
    data: Type.Array(InvoiceSchema),
    has_more: Type.Boolean(),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass as `starting_after` for the next page.",
    }),
  },
  { examples: [{ data: [invoiceExample], has_more: false, next_cursor: null }] },
);
