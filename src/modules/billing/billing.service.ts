import { createHash, randomUUID } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { billingMeterReports } from "../../platform/db/schema/index.ts";
import { errors, isAppError } from "../../platform/errors.ts";
import { calendar } from "../rate-limit/calendar.ts";
import { TIER_LIMITS, TIER_STREAM } from "../rate-limit/policy.ts";
import type { RateLimits } from "../rate-limit/rate-limits.ts";
import type { BillingCustomer, BillingRepo } from "./billing.repo.ts";
import type { InvoiceView, SubscriptionView } from "./billing.schemas.ts";
import { type BillingClient, BillingRequestError, type InvoicePage, type InvoiceSummary } from "./billing-client.ts";
import { apiStatus, blocksCheckout } from "./billing-state.ts";

export interface BillingServiceConfig {
  readonly publicBaseUrl: string;
  readonly redirectOrigins: readonly string[];
  readonly prices: { readonly pro: readonly string[]; readonly enterprise: readonly string[] };
  readonly invoiceCacheMs: number;
}

export interface BillingServiceDeps {
  readonly client: BillingClient;
  readonly repo: BillingRepo;
  readonly limits: RateLimits;
  readonly config: BillingServiceConfig;
  readonly now: () => number;
  /** Called when Stripe failed a customer-facing call (metrics). */
  readonly onStripeFailure?: (operation: string) => void;
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());
const isoSeconds = (s: number | null) => (s === null ? null : new Date(s * 1000).toISOString());

export function invoiceView(i: InvoiceSummary): InvoiceView {
  return {
    id: i.id,
    number: i.number,
    status: i.status,
    amount_due: i.amountDue,
    amount_paid: i.amountPaid,
    currency: i.currency,
    created: new Date(i.created * 1000).toISOString(),
    period_start: isoSeconds(i.periodStart),
    period_end: isoSeconds(i.periodEnd),
    hosted_invoice_url: i.hostedInvoiceUrl,
    invoice_pdf: i.invoicePdf,
  };
}

/** A redirect target: an http(s) URL whose origin is on the allow-list, else 400 redirect_not_allowed. */
export function allowedRedirect(value: string, field: string, allowed: readonly string[]): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw errors.redirectNotAllowed(field, allowed);
  }
  if ((u.protocol !== "https:" && u.protocol !== "http:") || u.username !== "" || u.password !== "") {
    throw errors.redirectNotAllowed(field, allowed);
  }
  if (!allowed.includes(u.origin)) throw errors.redirectNotAllowed(field, allowed);
  return u.toString();
}

interface CachedPage {
  readonly at: number;
  readonly page: InvoicePage;
}

/**
 * The customer-facing half of billing: checkout, portal, subscription view and invoices. No
 * Fastify here; Stripe failures become 503 billing_unavailable and nothing is half-written.
 */
export class BillingService {
  private readonly deps: BillingServiceDeps;
  private readonly invoiceCache = new Map<string, CachedPage>();

  constructor(deps: BillingServiceDeps) {
    this.deps = deps;
  }

  private async stripe<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isAppError(e)) throw e; // already the caller's answer (e.g. an unknown cursor)
      this.deps.onStripeFailure?.(operation);
      // A refused request (our bug or misconfiguration) is as unusable to the caller as an outage;
      // Stripe's message goes to the log through `cause`, never to the client.
      throw errors.billingUnavailable(e);
    }
  }

  private async customerOr404(customerId: string): Promise<BillingCustomer> {
    const c = await this.deps.repo.customer(customerId);
    if (c === undefined) throw errors.notFound("Customer");
    return c;
  }

  /** The customer's Stripe customer id, created (idempotently, keyed by our id) on first use. */
  async ensureStripeCustomer(c: BillingCustomer): Promise<string> {
    if (c.stripeCustomerId !== null) return c.stripeCustomerId;
    const email = (await this.deps.repo.ownerEmail(c.id)) ?? c.email;
    const created = await this.stripe("create_customer", () =>
      this.deps.client.createCustomer({ ourCustomerId: c.id, email, name: c.name }),
    );
    const held = await this.deps.repo.attachStripeCustomer(c.id, created.id);
    if (held === null) throw errors.notFound("Customer");
    return held;
  }

  async checkout(
    customerId: string,
    input: { tier: "pro" | "enterprise"; successUrl?: string; cancelUrl?: string },
    idempotencyKey?: string,
  ): Promise<{ url: string; session_id: string }> {
    const { config } = this.deps;
    const base = config.publicBaseUrl;
    const successUrl = allowedRedirect(
      input.successUrl ?? `${base}/billing/success`,
      "success_url",
      config.redirectOrigins,
    );
    const cancelUrl = allowedRedirect(
      input.cancelUrl ?? `${base}/billing/cancel`,
      "cancel_url",
      config.redirectOrigins,
    );
    const c = await this.customerOr404(customerId);
    if (blocksCheckout(c.subscriptionStatus)) throw errors.subscriptionExists(apiStatus(c.subscriptionStatus));
    const priceId = config.prices[input.tier][0];
    if (priceId === undefined) throw errors.billingDisabled();
    const stripeCustomerId = await this.ensureStripeCustomer(c);
    // A client retry with the same Idempotency-Key gets the same session; otherwise each call is new.
    const key =
      idempotencyKey === undefined
        ? `checkout-${randomUUID()}`
        : `checkout-${createHash("sha256").update(`${customerId}\n${idempotencyKey}`).digest("hex").slice(0, 48)}`;
    const session = await this.stripe("create_checkout_session", () =>
      this.deps.client.createCheckoutSession({
        stripeCustomerId,
        ourCustomerId: customerId,
        priceId,
        successUrl,
        cancelUrl,
        idempotencyKey: key,
      }),
    );
    return { url: session.url, session_id: session.id };
  }

  async portal(customerId: string, returnUrl: string | undefined): Promise<{ url: string }> {
    const { config } = this.deps;
    const url = allowedRedirect(returnUrl ?? `${config.publicBaseUrl}/billing`, "return_url", config.redirectOrigins);
    const c = await this.customerOr404(customerId);
    const stripeCustomerId = await this.ensureStripeCustomer(c);
    return this.stripe("create_portal_session", () =>
      this.deps.client.createPortalSession({ stripeCustomerId, returnUrl: url }),
    );
  }

  private async invoicePage(stripeCustomerId: string, limit: number, startingAfter?: string): Promise<InvoicePage> {
    const key = `${stripeCustomerId}\n${limit}\n${startingAfter ?? ""}`;
    const now = this.deps.now();
    const hit = this.invoiceCache.get(key);
    if (hit !== undefined && now - hit.at < this.deps.config.invoiceCacheMs) return hit.page;
    const page = await this.stripe("list_invoices", () =>
      this.deps.client
        .listInvoices({
          stripeCustomerId,
          limit,
          ...(startingAfter === undefined ? {} : { startingAfter }),
        })
        .catch((e: unknown) => {
          // A well-formed cursor naming no invoice of this customer is the caller's mistake, not an outage.
          if (startingAfter !== undefined && e instanceof BillingRequestError && e.stripeCode === "resource_missing") {
            throw errors.invalidRequest([{ in: "query", path: "/starting_after", message: "no such invoice" }]);
          }
          throw e;
        }),
    );
    if (this.invoiceCache.size >= 10_000) this.invoiceCache.delete(this.invoiceCache.keys().next().value as string);
    this.invoiceCache.set(key, { at: now, page });
    return page;
  }

  /** Drops a customer's cached invoice pages (after an invoice event). */
  forgetInvoices(stripeCustomerId: string): void {
    for (const k of this.invoiceCache.keys()) if (k.startsWith(`${stripeCustomerId}\n`)) this.invoiceCache.delete(k);
  }

  async invoices(
    customerId: string,
    limit: number,
    startingAfter?: string,
  ): Promise<{ data: InvoiceView[]; has_more: boolean; next_cursor: string | null }> {
    const c = await this.customerOr404(customerId);
    if (c.stripeCustomerId === null) return { data: [], has_more: false, next_cursor: null };
    const page = await this.invoicePage(c.stripeCustomerId, limit, startingAfter);
    const data = page.data.map(invoiceView);
    return { data, has_more: page.hasMore, next_cursor: page.hasMore ? (data.at(-1)?.id ?? null) : null };
  }

  async subscription(customerId: string): Promise<SubscriptionView> {
    const c = await this.customerOr404(customerId);
    const { limits } = this.deps;
    const [meter, stream, reported] = await Promise.all([
      limits.service.peek(customerId),
      limits.streamTime.peek(customerId),
      this.reportedOverage(customerId, calendar(this.deps.now()).month),
    ]);
    const includedRequests = c.quotaPerMonth ?? TIER_LIMITS[c.tier].perMonth;
    const includedStream = c.streamSecondsPerMonth ?? TIER_STREAM[c.tier].secondsPerMonth;
    const usedStream = Math.floor(stream.monthMs / 1000);
    const over = (used: number, included: number | null) => (included === null ? 0 : Math.max(0, used - included));

    let lastInvoice: InvoiceView | null = null;
    let lastInvoiceUnavailable = false;
    if (c.stripeCustomerId !== null) {
      try {
        lastInvoice = (await this.invoicePage(c.stripeCustomerId, 1)).data.map(invoiceView)[0] ?? null;
      } catch (e) {
        if (!(isAppError(e) && e.code === "billing_unavailable")) throw e;
        lastInvoiceUnavailable = true;
      }
    }
    const snapshotPrice = c.stripePriceId === null ? null : await this.priceOf(c);
    return {
      customer_id: c.id,
      tier: c.tier,
      status: apiStatus(c.subscriptionStatus),
      current_period_start: iso(c.currentPeriodStart),
      current_period_end: iso(c.currentPeriodEnd),
      cancel_at_period_end: c.cancelAtPeriodEnd,
      price: snapshotPrice,
      grace_until: c.subscriptionStatus === "past_due" ? iso(c.graceUntil) : null,
      usage: {
        period_start: new Date(`${meter.cal.month}T00:00:00Z`).toISOString(),
        period_end: new Date(meter.cal.nextMonthAt).toISOString(),
        requests: {
          used: meter.month,
          included: includedRequests,
          overage: over(meter.month, includedRequests),
          overage_cap: c.overageEnabled ? c.overageCapRequests : null,
        },
        stream_seconds: {
          used: usedStream,
          included: includedStream,
          overage: over(usedStream, includedStream),
          overage_cap: c.overageEnabled ? c.overageCapStreamSeconds : null,
        },
      },
      overage: {
        enabled: c.overageEnabled,
        reported_requests: reported.requests,
        reported_stream_seconds: reported.stream_seconds,
      },
      last_invoice: lastInvoice,
      ...(lastInvoiceUnavailable ? { last_invoice_unavailable: true } : {}),
    };
  }

  private priceCache = new Map<string, { amount: number | null; currency: string; interval: string | null }>();

  /** The subscribed price's amount, from the subscription snapshot (cached per price id). */
  private async priceOf(c: BillingCustomer): Promise<SubscriptionView["price"]> {
    const id = c.stripePriceId as string;
    let p = this.priceCache.get(id);
    if (p === undefined && c.stripeSubscriptionId !== null) {
      try {
        const sub = await this.deps.client.retrieveSubscription(c.stripeSubscriptionId);
        if (sub !== null && sub.priceId === id) {
          p = { amount: sub.unitAmount, currency: sub.currency, interval: sub.interval };
          this.priceCache.set(id, p);
        }
      } catch {
        // Shown without the amount this time; the subscription itself is ours and current.
      }
    }
    return { id, amount: p?.amount ?? null, currency: p?.currency ?? "usd", interval: p?.interval ?? null };
  }

  private async reportedOverage(
    customerId: string,
    period: string,
  ): Promise<{ requests: number; stream_seconds: number }> {
    const rows = await this.deps.repo.db
      .select({ meter: billingMeterReports.meter, reported: billingMeterReports.reported })
      .from(billingMeterReports)
      .where(and(eq(billingMeterReports.customerId, customerId), eq(billingMeterReports.period, period)));
    const get = (m: string) => rows.find((r) => r.meter === m)?.reported ?? 0;
    return { requests: get("requests"), stream_seconds: get("stream_seconds") };
  }
}
