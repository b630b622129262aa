/**
 * The narrow interface the billing service uses to talk to Stripe. The real implementation
 * (`stripe-billing-client.ts`) wraps the official SDK with the pinned API version, timeouts,
 * retries with idempotency keys, and validates every answer like user input; tests point it at
 * the Stripe-protocol fake in `test/helpers/stripe-fake.ts`.
 *
 * Nothing here is Stripe's object model: only the fields billing reads, already validated.
 * Every method throws `BillingUnavailableError` when Stripe cannot be reached, times out, answers
 * 5xx or 429, or answers something that does not validate; the routes map it to 503
 * `billing_unavailable`, never a 500 carrying Stripe's text.
 */

/** A Stripe subscription status as Stripe spells it. */
export type StripeSubscriptionStatus =
  | "incomplete"
  | "incomplete_expired"
  | "trialing"
  | "active"
  | "past_due"
  | "canceled"
  | "unpaid"
  | "paused";

export interface SubscriptionSnapshot {
  readonly id: string;
  /** The Stripe customer id (`cus_...`). */
  readonly customerId: string;
  readonly status: StripeSubscriptionStatus;
  /** The first item's price; a subscription of this product has one item. */
  readonly priceId: string;
  /** Unit amount of that price in the smallest currency unit (cents), null for metered/tiered. */
  readonly unitAmount: number | null;
  readonly currency: string;
  /** `day`, `week`, `month` or `year`. */
  readonly interval: string | null;
  /** Billed every `intervalCount` intervals (Stripe's `recurring.interval_count`; absent: 1). */
  readonly intervalCount?: number;
  /** The item's quantity (seats); absent: 1. */
  readonly quantity?: number;
  /** Seconds since the epoch (Stripe's `current_period_*`, on the item since API 2025-03-31). */
  readonly currentPeriodStart: number | null;
  readonly currentPeriodEnd: number | null;
  readonly cancelAtPeriodEnd: boolean;
  /** Seconds since the epoch; Stripe's `created`. */
  readonly created: number;
  /** The subscription's `metadata.customer_id` (ours), when set at checkout. */
  readonly ourCustomerId: string | null;
  readonly latestInvoiceId: string | null;
}

export interface InvoiceSummary {
  readonly id: string;
  readonly number: string | null;
  /** draft, open, paid, uncollectible, void. */
  readonly status: string | null;
  readonly amountDue: number;
  readonly amountPaid: number;
  readonly currency: string;
  readonly created: number;
  readonly hostedInvoiceUrl: string | null;
  readonly invoicePdf: string | null;
  readonly periodStart: number | null;
  readonly periodEnd: number | null;
  readonly subscriptionId: string | null;
}

export interface InvoicePage {
  readonly data: readonly InvoiceSummary[];
  readonly hasMore: boolean;
}

/** A verified webhook event: only what dispatch needs; `object` is validated by the handler. */
export interface VerifiedEvent {
  readonly id: string;
  readonly type: string;
  /** Seconds since the epoch. */
  readonly created: number;
  readonly livemode: boolean;
  readonly object: Readonly<Record<string, unknown>>;
}

export interface MeterEvent {
  readonly eventName: string;
  readonly stripeCustomerId: string;
  /** A positive integer. */
  readonly value: number;
  /** Stripe de-duplicates meter events by this identifier; derive it from (customer, window). */
  readonly identifier: string;
  /** Seconds since the epoch (must be within Stripe's accepted past window). */
  readonly timestamp: number;
}

export interface BillingClient {
  /**
   * Creates the Stripe customer for one of ours. The idempotency key is derived from our id,
   * so a retry (or two concurrent checkouts) never creates two.
   */
  createCustomer(input: { ourCustomerId: string; email: string; name: string }): Promise<{ id: string }>;
  createCheckoutSession(input: {
    stripeCustomerId: string;
    ourCustomerId: string;
    priceId: string;
    successUrl: string;
    cancelUrl: string;
    /** Stable per logical attempt, so a retried call returns the same session. */
    idempotencyKey: string;
  }): Promise<{ id: string; url: string }>;
  createPortalSession(input: { stripeCustomerId: string; returnUrl: string }): Promise<{ url: string }>;
  /** Null when Stripe says the subscription does not exist. */
  retrieveSubscription(id: string): Promise<SubscriptionSnapshot | null>;
  /** Subscriptions of a Stripe customer, newest first, any status (for reconciliation). */
  listSubscriptions(stripeCustomerId: string): Promise<readonly SubscriptionSnapshot[]>;
  retrieveInvoice(id: string): Promise<InvoiceSummary | null>;
  listInvoices(input: { stripeCustomerId: string; limit: number; startingAfter?: string }): Promise<InvoicePage>;
  /** Cancels now (no proration, no final invoice); a subscription already gone is success. */
  cancelSubscription(id: string): Promise<void>;
  /** A customer already gone is success. */
  deleteCustomer(id: string): Promise<void>;
  reportMeterEvent(event: MeterEvent): Promise<void>;
  /**
   * Verifies the `Stripe-Signature` header over the raw body (tolerance 300 s) and parses the
   * event; throws `InvalidSignatureError` on any failure.
   */
  verifyWebhook(rawBody: Buffer, signature: string | undefined): VerifiedEvent;
}

/** Stripe could not be reached or answered something unusable; nothing was changed on our side. */
export class BillingUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BillingUnavailableError";
  }
}

/** Stripe refused the request as invalid (4xx other than 429); a bug or misconfiguration on our side. */
export class BillingRequestError extends Error {
  readonly stripeCode: string | undefined;
  readonly statusCode: number | undefined;
  constructor(message: string, options: { cause?: unknown; stripeCode?: string; statusCode?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = "BillingRequestError";
    this.stripeCode = options.stripeCode;
    this.statusCode = options.statusCode;
  }
}

export class InvalidSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidSignatureError";
  }
}
