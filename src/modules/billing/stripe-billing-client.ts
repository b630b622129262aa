import Stripe from "stripe";
import type { Config } from "../../config.ts";
import {
  type BillingClient,
  BillingRequestError,
  BillingUnavailableError,
  InvalidSignatureError,
  type InvoicePage,
  type InvoiceSummary,
  type StripeSubscriptionStatus,
  type SubscriptionSnapshot,
  type VerifiedEvent,
} from "./billing-client.ts";

/**
 * The BillingClient over the official SDK, pinned to the API version the SDK ships with
 * (`Stripe.API_VERSION`): the SDK's types describe exactly that version, and in it
 * `current_period_*` live on subscription items and an invoice's subscription on
 * `parent.subscription_details`.
 *
 * Every answer is read as `unknown` and validated like user input: anything unusable becomes a
 * `BillingUnavailableError`, never a crash or a half-read object.
 */

const SUBSCRIPTION_STATUSES: ReadonlySet<string> = new Set<StripeSubscriptionStatus>([
  "incomplete",
  "incomplete_expired",
  "trialing",
  "active",
  "past_due",
  "canceled",
  "unpaid",
  "paused",
]);
const INVOICE_STATUSES: ReadonlySet<string> = new Set(["draft", "open", "paid", "uncollectible", "void"]);
const INTERVALS: ReadonlySet<string> = new Set(["day", "week", "month", "year"]);

/** Subscriptions fetched per customer at most (pages of 100); a customer has a handful. */
const MAX_SUBSCRIPTION_PAGES = 10;

export function createStripeBillingClient(
  billing: Config["billing"],
  options: { appVersion?: string } = {},
): BillingClient {
  const key = billing.stripeSecretKey;
  if (key === undefined) throw new Error("createStripeBillingClient: STRIPE_SECRET_KEY is not configured");
  const stripe = new Stripe(key, {
    apiVersion: Stripe.API_VERSION,
    ...endpoint(billing.apiBase),
    timeout: billing.timeoutMs,
    maxNetworkRetries: billing.maxNetworkRetries,
    telemetry: false,
    appInfo: {
      name: "vla-inference-api",
      ...(options.appVersion === undefined ? {} : { version: options.appVersion }),
    },
  });
  const webhookSecret = billing.webhookSecret;

  return {
    async createCustomer({ ourCustomerId, email, name }) {
      const res = await call("create customer", () =>
        stripe.customers.create(
          { email, name, metadata: { customer_id: ourCustomerId } },
          { idempotencyKey: `customer-create-${ourCustomerId}` },
        ),
      );
      return { id: readId(res, "id", "cus_", "customer") };
    },

    async createCheckoutSession(input) {
      const res = await call("create checkout session", () =>
        stripe.checkout.sessions.create(
          {
            mode: "subscription",
            customer: input.stripeCustomerId,
            client_reference_id: input.ourCustomerId,
            line_items: [{ price: input.priceId, quantity: 1 }],
            success_url: input.successUrl,
            cancel_url: input.cancelUrl,
            metadata: { customer_id: input.ourCustomerId },
            subscription_data: { metadata: { customer_id: input.ourCustomerId } },
          },
          { idempotencyKey: input.idempotencyKey },
        ),
      );
      const id = readId(res, "id", "cs_", "checkout session");
      const url = readUrl(res, "url", "checkout session");
      if (url === null) throw unusable("checkout session", "url");
      return { id, url };
    },

    async createPortalSession({ stripeCustomerId, returnUrl }) {
      const res = await call("create portal session", () =>
        stripe.billingPortal.sessions.create({ customer: stripeCustomerId, return_url: returnUrl }),
      );
      const url = readUrl(res, "url", "portal session");
      if (url === null) throw unusable("portal session", "url");
      return { url };
    },

    async retrieveSubscription(id) {
      checkInputId(id, "sub_", "subscription id");
      try {
        const res = await call("retrieve subscription", () => stripe.subscriptions.retrieve(id));
        return toSubscription(res);
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },

    async listSubscriptions(stripeCustomerId) {
      checkInputId(stripeCustomerId, "cus_", "customer id");
      const out: SubscriptionSnapshot[] = [];
      let startingAfter: string | undefined;
      for (let page = 0; page < MAX_SUBSCRIPTION_PAGES; page++) {
        const res = await call("list subscriptions", () =>
          stripe.subscriptions.list({
            customer: stripeCustomerId,
            status: "all",
            limit: 100,
            ...(startingAfter === undefined ? {} : { starting_after: startingAfter }),
          }),
        );
        const { data, hasMore } = readList(res, "subscription list");
        for (const item of data) out.push(toSubscription(item));
        const last = out.at(-1);
        if (!hasMore || last === undefined) break;
        startingAfter = last.id;
      }
      // Stripe lists newest first already; sort anyway so callers can rely on it.
      return out.sort((a, b) => b.created - a.created);
    },

    async retrieveInvoice(id) {
      checkInputId(id, "in_", "invoice id");
      try {
        const res = await call("retrieve invoice", () => stripe.invoices.retrieve(id));
        return toInvoice(res);
      } catch (err) {
        if (isMissing(err)) return null;
        throw err;
      }
    },

    async listInvoices({ stripeCustomerId, limit, startingAfter }): Promise<InvoicePage> {
      checkInputId(stripeCustomerId, "cus_", "customer id");
      if (startingAfter !== undefined) checkInputId(startingAfter, "in_", "invoice cursor");
      if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
        throw new BillingRequestError("listInvoices: limit must be an integer in 1..100");
      }
      const res = await call("list invoices", () =>
        stripe.invoices.list({
          customer: stripeCustomerId,
          limit,
          ...(startingAfter === undefined ? {} : { starting_after: startingAfter }),
        }),
      );
      const { data, hasMore } = readList(res, "invoice list");
      return { data: data.map(toInvoice), hasMore };
    },

    async cancelSubscription(id) {
      checkInputId(id, "sub_", "subscription id");
      try {
        // DELETE is idempotent by definition; Stripe ignores Idempotency-Key on it. Cancelling an
        // already canceled subscription answers 404 resource_missing, which is success here.
        const res = await call("cancel subscription", () =>
          stripe.subscriptions.cancel(id, { invoice_now: false, prorate: false }),
        );
        readId(res, "id", "sub_", "subscription");
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
    },

    async deleteCustomer(id) {
      checkInputId(id, "cus_", "customer id");
      try {
        const res = await call("delete customer", () => stripe.customers.del(id));
        readId(res, "id", "cus_", "customer");
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
    },

    async reportMeterEvent(event) {
      if (!Number.isSafeInteger(event.value) || event.value <= 0) {
        throw new BillingRequestError("reportMeterEvent: value must be a positive integer");
      }
      if (!Number.isSafeInteger(event.timestamp) || event.timestamp <= 0) {
        throw new BillingRequestError("reportMeterEvent: timestamp must be seconds since the epoch");
      }
      if (!/^[\x21-\x7e]{1,100}$/.test(event.identifier)) {
        throw new BillingRequestError("reportMeterEvent: identifier must be 1-100 printable ASCII characters");
      }
      checkInputId(event.stripeCustomerId, "cus_", "customer id");
      const res = await call("report meter event", () =>
        stripe.billing.meterEvents.create(
          {
            event_name: event.eventName,
            payload: { stripe_customer_id: event.stripeCustomerId, value: String(event.value) },
            identifier: event.identifier,
            timestamp: event.timestamp,
          },
          { idempotencyKey: `meter-event-${event.identifier}` },
        ),
      );
      if (!isRecord(res) || res.identifier !== event.identifier) throw unusable("meter event", "identifier");
    },

    verifyWebhook(rawBody, signature): VerifiedEvent {
      if (webhookSecret === undefined) throw new InvalidSignatureError("no webhook secret is configured");
      if (signature === undefined || signature === "") throw new InvalidSignatureError("missing Stripe-Signature");
      let parsed: unknown;
      try {
        parsed = stripe.webhooks.constructEvent(rawBody, signature, webhookSecret, 300);
      } catch (err) {
        // The SDK's messages are about the header and tolerance; they never carry the secret.
        throw new InvalidSignatureError(err instanceof Error ? err.message : "signature verification failed");
      }
      if (!isRecord(parsed)) throw new InvalidSignatureError("event is not an object");
      const { id, type, created, livemode, data } = parsed;
      if (typeof id !== "string" || !/^evt_[A-Za-z0-9_]{1,250}$/.test(id)) {
        throw new InvalidSignatureError("event has no valid id");
      }
      if (typeof type !== "string" || !/^[a-z0-9_.]{1,100}$/.test(type)) {
        throw new InvalidSignatureError("event has no valid type");
      }
      if (!isTimestamp(created)) throw new InvalidSignatureError("event has no valid created");
      if (!isRecord(data) || !isRecord(data.object)) throw new InvalidSignatureError("event has no data.object");
      return { id, type, created, livemode: livemode === true, object: data.object };
    },
  };
}

/** `host`, `port` and `protocol` for the SDK from `STRIPE_API_BASE` (its path is ignored: the SDK uses /v1). */
function endpoint(apiBase: string | undefined): { host?: string; port?: number; protocol?: "http" | "https" } {
  if (apiBase === undefined) return {};
  const u = new URL(apiBase);
  const protocol = u.protocol === "http:" ? "http" : "https";
  const port = u.port === "" ? (protocol === "http" ? 80 : 443) : Number(u.port);
  // URL keeps IPv6 literals bracketed; node's http wants them bare.
  return { host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port, protocol };
}

/** Runs one SDK call, mapping its failures to the interface's errors. */
async function call<T>(what: string, fn: () => Promise<T>): Promise<unknown> {
  try {
    return await fn();
  } catch (err) {
    throw mapError(what, err);
  }
}

interface StripeErrorLike {
  type?: unknown;
  statusCode?: unknown;
  code?: unknown;
  message?: unknown;
}

function mapError(what: string, err: unknown): Error {
  if (!(err instanceof Stripe.errors.StripeError)) {
    // Not an API answer (the SDK failed before or after the request): treat as an outage.
    return new BillingUnavailableError(`Stripe ${what} failed`, { cause: redactCause(err) });
  }
  const e = err as StripeErrorLike;
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  const code = typeof e.code === "string" ? e.code : undefined;
  const type = typeof e.type === "string" ? e.type : "StripeError";
  if (
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    status === 409 ||
    type === "StripeConnectionError" ||
    type === "StripeAPIError" ||
    type === "StripeRateLimitError"
  ) {
    const detail = status === undefined ? "no answer" : `HTTP ${status}`;
    return new BillingUnavailableError(`Stripe ${what} failed (${detail})`, { cause: redactCause(err) });
  }
  const message = typeof e.message === "string" ? redact(e.message) : "request refused";
  return new BillingRequestError(`Stripe refused ${what} (HTTP ${status}${code ? ` ${code}` : ""}): ${message}`, {
    cause: redactCause(err),
    statusCode: status,
    ...(code === undefined ? {} : { stripeCode: code }),
  });
}

function isMissing(err: unknown): boolean {
  return err instanceof BillingRequestError && err.statusCode === 404 && err.stripeCode === "resource_missing";
}

/** Stripe echoes masked keys in some messages ("Invalid API Key provided: sk_test_****1234"); drop them. */
function redact(text: string): string {
  return text.replace(/\b(sk|rk|pk|whsec)_[A-Za-z0-9_*]+/g, "[redacted]").slice(0, 500);
}

/** A cause that can be logged: the SDK error's name, type, status, code and redacted message only. */
function redactCause(err: unknown): Error {
  if (!(err instanceof Error)) return new Error("non-error thrown");
  const e = err as Error & StripeErrorLike;
  const out = new Error(redact(err.message));
  out.name = err.name;
  Object.assign(out, {
    ...(typeof e.type === "string" ? { type: e.type } : {}),
    ...(typeof e.statusCode === "number" ? { statusCode: e.statusCode } : {}),
    ...(typeof e.code === "string" ? { code: e.code } : {}),
  });
  return out;
}

function unusable(what: string, field: string): BillingUnavailableError {
  return new BillingUnavailableError(`Stripe answered an unusable ${what} (${field})`);
}

function checkInputId(id: string, prefix: string, what: string): void {
  if (!isStripeId(id, prefix)) throw new BillingRequestError(`not a Stripe ${what}: expected ${prefix}...`);
}

function isStripeId(v: unknown, prefix: string): v is string {
  return typeof v === "string" && v.length <= 255 && v.startsWith(prefix) && /^[a-z]+_[A-Za-z0-9_]+$/.test(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isTimestamp(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function readId(obj: unknown, field: string, prefix: string, what: string): string {
  const v = isRecord(obj) ? obj[field] : undefined;
  if (!isStripeId(v, prefix)) throw unusable(what, field);
  return v;
}

/** An id field that may be expanded into an object (`customer` vs `{id: ...}`) or null. */
function readRef(obj: Record<string, unknown>, field: string, prefix: string, what: string): string | null {
  const v = obj[field];
  if (v === null || v === undefined) return null;
  if (isStripeId(v, prefix)) return v;
  if (isRecord(v) && isStripeId(v.id, prefix)) return v.id;
  throw unusable(what, field);
}

function readUrl(obj: unknown, field: string, what: string): string | null {
  const v = isRecord(obj) ? obj[field] : undefined;
  if (v === null || v === undefined) return null;
  if (typeof v !== "string" || v.length > 5000) throw unusable(what, field);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw unusable(what, field);
  }
  if (u.protocol !== "https:") throw unusable(what, field);
  return v;
}

function readTimestamp(obj: Record<string, unknown>, field: string, what: string): number {
  const v = obj[field];
  if (!isTimestamp(v)) throw unusable(what, field);
  return v;
}

function readOptionalTimestamp(obj: Record<string, unknown>, field: string, what: string): number | null {
  const v = obj[field];
  if (v === null || v === undefined) return null;
  if (!isTimestamp(v)) throw unusable(what, field);
  return v;
}

function readAmount(obj: Record<string, unknown>, field: string, what: string): number {
  const v = obj[field];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw unusable(what, field);
  return v;
}

function readCurrency(obj: Record<string, unknown>, field: string, what: string): string {
  const v = obj[field];
  if (typeof v !== "string" || !/^[a-z]{3}$/.test(v)) throw unusable(what, field);
  return v;
}

function readList(res: unknown, what: string): { data: unknown[]; hasMore: boolean } {
  if (!isRecord(res) || res.object !== "list") throw unusable(what, "object");
  if (!Array.isArray(res.data)) throw unusable(what, "data");
  if (typeof res.has_more !== "boolean") throw unusable(what, "has_more");
  return { data: res.data, hasMore: res.has_more };
}

function toSubscription(raw: unknown): SubscriptionSnapshot {
  const what = "subscription";
  if (!isRecord(raw) || raw.object !== "subscription") throw unusable(what, "object");
  const id = readId(raw, "id", "sub_", what);
  const customerId = readRef(raw, "customer", "cus_", what);
  if (customerId === null) throw unusable(what, "customer");
  const status = raw.status;
  if (typeof status !== "string" || !SUBSCRIPTION_STATUSES.has(status)) throw unusable(what, "status");
  const items = raw.items;
  if (!isRecord(items) || !Array.isArray(items.data)) throw unusable(what, "items");
  const item: unknown = items.data[0];
  if (!isRecord(item)) throw unusable(what, "items.data[0]");
  const price = item.price;
  if (!isRecord(price)) throw unusable(what, "items.data[0].price");
  const priceId = readId(price, "id", "price_", what);
  const unitAmount = price.unit_amount;
  if (
    unitAmount !== null &&
    unitAmount !== undefined &&
    (!Number.isSafeInteger(unitAmount) || (unitAmount as number) < 0)
  ) {
    throw unusable(what, "items.data[0].price.unit_amount");
  }
  let interval: string | null = null;
  let intervalCount = 1;
  if (isRecord(price.recurring)) {
    const i = price.recurring.interval;
    if (typeof i !== "string" || !INTERVALS.has(i)) throw unusable(what, "items.data[0].price.recurring.interval");
    interval = i;
    const n = price.recurring.interval_count;
    if (n !== undefined && n !== null) {
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) {
        throw unusable(what, "items.data[0].price.recurring.interval_count");
      }
      intervalCount = n;
    }
  }
  const q = item.quantity;
  if (q !== undefined && q !== null && (typeof q !== "number" || !Number.isSafeInteger(q) || q < 0)) {
    throw unusable(what, "items.data[0].quantity");
  }
  const quantity = typeof q === "number" ? q : 1;
  const cancelAtPeriodEnd = raw.cancel_at_period_end;
  if (typeof cancelAtPeriodEnd !== "boolean") throw unusable(what, "cancel_at_period_end");
  let ourCustomerId: string | null = null;
  if (isRecord(raw.metadata)) {
    const c = raw.metadata.customer_id;
    if (typeof c === "string" && c.length > 0 && c.length <= 500) ourCustomerId = c;
  }
  return {
    id,
    customerId,
    status: status as StripeSubscriptionStatus,
    priceId,
    unitAmount: typeof unitAmount === "number" ? unitAmount : null,
    currency: readCurrency(raw, "currency", what),
    interval,
    intervalCount,
    quantity,
    currentPeriodStart: readOptionalTimestamp(item, "current_period_start", what),
    currentPeriodEnd: readOptionalTimestamp(item, "current_period_end", what),
    cancelAtPeriodEnd,
    created: readTimestamp(raw, "created", what),
    ourCustomerId,
    latestInvoiceId: readRef(raw, "latest_invoice", "in_", what),
  };
}

function toInvoice(raw: unknown): InvoiceSummary {
  const what = "invoice";
  if (!isRecord(raw) || raw.object !== "invoice") throw unusable(what, "object");
  const number = raw.number;
  if (number !== null && number !== undefined && (typeof number !== "string" || number.length > 100)) {
    throw unusable(what, "number");
  }
  const status = raw.status;
  if (status !== null && status !== undefined && (typeof status !== "string" || !INVOICE_STATUSES.has(status))) {
    throw unusable(what, "status");
  }
  let subscriptionId: string | null = null;
  const parent = raw.parent;
  if (isRecord(parent) && isRecord(parent.subscription_details)) {
    subscriptionId = readRef(parent.subscription_details, "subscription", "sub_", what);
  }
  return {
    // Invoice ids are in_...; a draft's may be too. Upcoming invoices have none and are never listed.
    id: readId(raw, "id", "in_", what),
    number: typeof number === "string" ? number : null,
    status: typeof status === "string" ? status : null,
    amountDue: readAmount(raw, "amount_due", what),
    amountPaid: readAmount(raw, "amount_paid", what),
    currency: readCurrency(raw, "currency", what),
    created: readTimestamp(raw, "created", what),
    hostedInvoiceUrl: readUrl(raw, "hosted_invoice_url", what),
    invoicePdf: readUrl(raw, "invoice_pdf", what),
    periodStart: readOptionalTimestamp(raw, "period_start", what),
    periodEnd: readOptionalTimestamp(raw, "period_end", what),
    subscriptionId,
  };
}
