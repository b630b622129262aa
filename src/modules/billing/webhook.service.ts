import { recordAudit } from "../../platform/audit.ts";
import type { Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import type { EmailMessage } from "../../platform/email.ts";
import { errors } from "../../platform/errors.ts";
import type { BillingCustomer, BillingRepo } from "./billing.repo.ts";
import {
  type BillingClient,
  BillingRequestError,
  BillingUnavailableError,
  InvalidSignatureError,
  type StripeSubscriptionStatus,
  type SubscriptionSnapshot,
  type VerifiedEvent,
} from "./billing-client.ts";
import { graceUntilFor, isLive, type PriceTable, tierFor, tierForPrice } from "./billing-state.ts";
import {
  downgradedEmail,
  paymentActionRequiredEmail,
  paymentFailedEmail,
  paymentRecoveredEmail,
  subscriptionCanceledEmail,
} from "./dunning.emails.ts";
import { monthlyAmount, recordSubscriptionChange } from "./subscription-changes.ts";
import {
  claimEvent,
  customersWithStripe,
  finishEvent,
  type SubscriptionFields,
  writeSubscription,
} from "./webhook.repo.ts";

/**
 * Stripe's webhook, framework-free. Deliveries are at-least-once and unordered, so:
 * - every event id is claimed in `stripe_events` (INSERT ... ON CONFLICT DO NOTHING) first, in
 *   the same transaction as its effects: a redelivery, or a concurrent second delivery, changes
 *   nothing;
 * - subscription and invoice events are only triggers: the subscription is re-read from Stripe
 *   while holding the customer's row lock, and that snapshot is applied through the pure state
 *   machine (billing-state.ts). A late `updated` then cannot resurrect a deleted subscription;
 * - Stripe unreachable while handling: the transaction rolls back (event id not recorded) and
 *   the caller answers 503, so Stripe delivers again later.
 * Limiter invalidation and emails happen after commit.
 */

export type WebhookOutcome = "applied" | "duplicate" | "ignored" | "unknown_type" | "unknown_price" | "stale";

export const HANDLED_EVENT_TYPES = [
  "checkout.session.completed",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "invoice.payment_succeeded",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.payment_action_required",
  "customer.deleted",
] as const;
const HANDLED: ReadonlySet<string> = new Set(HANDLED_EVENT_TYPES);

interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface WebhookMetrics {
  /** One per verified delivery; `type` is a handled type or "other". */
  event(type: string, outcome: WebhookOutcome | "stripe_unavailable"): void;
  invalidSignature(): void;
  unknownPrice(): void;
}

export interface WebhookDeps {
  readonly client: BillingClient;
  readonly repo: BillingRepo;
  readonly prices: PriceTable;
  readonly graceDays: number;
  readonly now: () => number;
  readonly publicBaseUrl: string;
  readonly log: Logger;
  readonly metrics: WebhookMetrics;
  /** After commit, when a customer's tier changed: every instance reloads its limits. */
  readonly customerChanged: (customerId: string) => Promise<void>;
  readonly sendEmail: (message: EmailMessage) => void;
  /** After commit of an invoice event (drop cached invoice lists). */
  readonly invoicesChanged?: (stripeCustomerId: string) => void;
}

interface Effects {
  readonly changed: Set<string>;
  readonly emails: { customerId: string; render: (to: string) => EmailMessage }[];
  readonly invoiceCustomers: Set<string>;
}

/** One customer's reconciliation: the subscription fields before and after (equal when nothing was off). */
export interface ReconcileReport {
  readonly customerId: string;
  readonly changed: boolean;
  readonly before: Record<string, unknown> | null;
  readonly after: Record<string, unknown> | null;
}

class DryRunRollback extends Error {}

const compared = (c: BillingCustomer | undefined) =>
  c === undefined
    ? null
    : {
        tier: c.tier,
        stripeSubscriptionId: c.stripeSubscriptionId,
        subscriptionStatus: c.subscriptionStatus,
        stripePriceId: c.stripePriceId,
        currentPeriodStart: c.currentPeriodStart?.toISOString() ?? null,
        currentPeriodEnd: c.currentPeriodEnd?.toISOString() ?? null,
        cancelAtPeriodEnd: c.cancelAtPeriodEnd,
        graceUntil: c.graceUntil?.toISOString() ?? null,
      };

interface Result {
  readonly outcome: WebhookOutcome;
  readonly customerId: string | null;
}

interface InvoiceRef {
  readonly id: string;
  readonly subscriptionId: string | null;
}

interface Trigger {
  readonly subscriptionId: string;
  readonly stripeCustomerId: string | null;
  /** Our customer id from metadata / client_reference_id, when Stripe's customer is not mapped yet. */
  readonly ourCustomerId: string | null;
  readonly invoice: InvoiceRef | null;
}

/** Statuses that keep the current tier when the price is unknown (a dead subscription gives free anyway). */
const KEEPS_TIER_ON_UNKNOWN_PRICE: ReadonlySet<string> = new Set(["active", "trialing", "past_due", "incomplete"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A Stripe id field that may be expanded into an object; null when absent or malformed. */
function ref(v: unknown, prefix: string): string | null {
  const id = isRecord(v) ? v.id : v;
  return typeof id === "string" && id.length <= 255 && id.startsWith(prefix) && /^[a-z]+_[A-Za-z0-9_]+$/.test(id)
    ? id
    : null;
}

function ourId(v: unknown): string | null {
  return typeof v === "string" && UUID.test(v) ? v.toLowerCase() : null;
}

function metadataCustomer(obj: unknown): string | null {
  return isRecord(obj) && isRecord(obj.metadata) ? ourId(obj.metadata.customer_id) : null;
}

const dead = (s: string | null) => s === "canceled" || s === "incomplete_expired";

/** Whether subscription `a` should be the customer's current one rather than `b`: live first, then newest. */
export function outranks(a: SubscriptionSnapshot, b: SubscriptionSnapshot): boolean {
  const la = isLive(a.status);
  const lb = isLive(b.status);
  if (la !== lb) return la;
  if (a.created !== b.created) return a.created > b.created;
  return a.id > b.id;
}

export class WebhookService {
  private readonly deps: WebhookDeps;

  constructor(deps: WebhookDeps) {
    this.deps = deps;
  }

  /** Verifies and handles one delivery: 400 invalid_signature, 503 billing_unavailable, or the outcome. */
  async receive(rawBody: Buffer, signature: string | undefined): Promise<WebhookOutcome> {
    let event: VerifiedEvent;
    try {
      event = this.deps.client.verifyWebhook(rawBody, signature);
    } catch (e) {
      if (!(e instanceof InvalidSignatureError)) throw e;
      this.deps.metrics.invalidSignature();
      throw errors.invalidSignature();
    }
    return this.handle(event);
  }

  async handle(event: VerifiedEvent): Promise<WebhookOutcome> {
    const typeLabel = HANDLED.has(event.type) ? event.type : "other";
    const effects: Effects = { changed: new Set(), emails: [], invoiceCustomers: new Set() };
    let outcome: WebhookOutcome;
    try {
      outcome = await this.deps.repo.db.transaction(async (txAny) => {
        const tx = txAny as unknown as Db;
        if (!(await claimEvent(tx, event))) return "duplicate";
        const r = await this.dispatch(tx, event, effects);
        await finishEvent(tx, event.id, r.outcome, r.customerId);
        return r.outcome;
      });
    } catch (e) {
      if (e instanceof BillingUnavailableError || e instanceof BillingRequestError) {
        this.deps.metrics.event(typeLabel, "stripe_unavailable");
        this.deps.log.warn(
          { err: e, event_id: event.id, event_type: event.type },
          "stripe webhook: Stripe unavailable while handling; rolled back, Stripe will redeliver",
        );
        throw errors.billingUnavailable(e);
      }
      throw e;
    }
    this.deps.metrics.event(typeLabel, outcome);
    if (outcome !== "duplicate") {
      // Committed: a failure from here on must not turn into a 5xx (the redelivery would be a duplicate anyway).
      await this.afterCommit(effects).catch((err: unknown) =>
        this.deps.log.warn({ err, event_id: event.id }, "stripe webhook: after-commit step failed"),
      );
    }
    return outcome;
  }

  /**
   * Reconciliation (a missed or mis-configured webhook): re-reads every subscription of the
   * customer's Stripe customer and applies the current one (live before dead, then newest)
   * through the same code path as an event, under the same row lock. `dryRun` reports the
   * difference and rolls back. Emails and limiter invalidation follow as for an event.
   */
  async reconcile(customerId: string, options: { dryRun?: boolean } = {}): Promise<ReconcileReport> {
    const { client, repo } = this.deps;
    const effects: Effects = { changed: new Set(), emails: [], invoiceCustomers: new Set() };
    let report: ReconcileReport = { customerId, changed: false, before: null, after: null };
    try {
      await repo.db.transaction(async (txAny) => {
        const tx = txAny as unknown as Db;
        const row = await repo.customerForUpdate(tx, customerId);
        if (row === undefined || row.stripeCustomerId === null) return;
        const subs = await client.listSubscriptions(row.stripeCustomerId);
        let best: SubscriptionSnapshot | null = null;
        for (const s of subs) if (best === null || outranks(s, best)) best = s;
        if (best === null && row.stripeSubscriptionId === null) {
          report = { customerId, changed: false, before: compared(row), after: compared(row) };
          return;
        }
        const event = { id: "reconcile", type: "reconcile" };
        await this.apply(tx, row, best ?? gone(row), { event, effects, attach: null, stale: false, invoice: null });
        const before = compared(row);
        const after = compared(await repo.customer(customerId, tx));
        report = { customerId, changed: JSON.stringify(before) !== JSON.stringify(after), before, after };
        if (options.dryRun === true) throw new DryRunRollback();
      });
    } catch (e) {
      if (!(e instanceof DryRunRollback)) throw e;
      return report;
    }
    await this.afterCommit(effects);
    return report;
  }

  /** Reconciles every customer that has a Stripe customer, one at a time. */
  async reconcileAll(options: { dryRun?: boolean } = {}): Promise<ReconcileReport[]> {
    const out: ReconcileReport[] = [];
    for (const id of await customersWithStripe(this.deps.repo.db)) out.push(await this.reconcile(id, options));
    return out;
  }

  private async afterCommit(effects: Effects): Promise<void> {
    for (const id of effects.changed) await this.deps.customerChanged(id);
    for (const c of effects.invoiceCustomers) this.deps.invoicesChanged?.(c);
    for (const e of effects.emails) {
      const to = await this.deps.repo.ownerEmail(e.customerId);
      if (to !== undefined) this.deps.sendEmail(e.render(to));
    }
  }

  private async dispatch(tx: Db, event: VerifiedEvent, effects: Effects): Promise<Result> {
    const o = event.object;
    const ignored: Result = { outcome: "ignored", customerId: null };
    switch (event.type) {
      case "checkout.session.completed": {
        const subscriptionId = ref(o.subscription, "sub_");
        if (o.mode !== "subscription" || subscriptionId === null) return ignored;
        return this.syncSubscription(tx, event, effects, {
          subscriptionId,
          stripeCustomerId: ref(o.customer, "cus_"),
          ourCustomerId: ourId(o.client_reference_id) ?? metadataCustomer(o),
          invoice: null,
        });
      }
      case "customer.subscription.created":
      case "customer.subscription.updated":
      case "customer.subscription.deleted":
      case "customer.subscription.paused":
      case "customer.subscription.resumed": {
        const subscriptionId = ref(o.id, "sub_");
        if (subscriptionId === null) return ignored;
        return this.syncSubscription(tx, event, effects, {
          subscriptionId,
          stripeCustomerId: ref(o.customer, "cus_"),
          ourCustomerId: metadataCustomer(o),
          invoice: null,
        });
      }
      case "invoice.payment_succeeded":
      case "invoice.paid":
      case "invoice.payment_failed":
      case "invoice.payment_action_required": {
        const details =
          isRecord(o.parent) && isRecord(o.parent.subscription_details) ? o.parent.subscription_details : null;
        const subscriptionId = ref(details?.subscription, "sub_") ?? ref(o.subscription, "sub_");
        const invoiceId = ref(o.id, "in_");
        const stripeCustomerId = ref(o.customer, "cus_");
        if (stripeCustomerId !== null) effects.invoiceCustomers.add(stripeCustomerId);
        // An invoice outside a subscription changes no tier.
        if (subscriptionId === null || invoiceId === null) return ignored;
        return this.syncSubscription(tx, event, effects, {
          subscriptionId,
          stripeCustomerId,
          ourCustomerId: metadataCustomer(details),
          invoice: { id: invoiceId, subscriptionId },
        });
      }
      case "customer.deleted":
        return this.customerDeleted(tx, event, o, effects);
      default:
        this.deps.log.info({ event_id: event.id, event_type: event.type }, "stripe webhook: unhandled event type");
        return { outcome: "unknown_type", customerId: null };
    }
  }

  /** Finds and locks our customer for a trigger, re-reads the subscription under the lock and applies it. */
  private async syncSubscription(tx: Db, event: VerifiedEvent, effects: Effects, t: Trigger): Promise<Result> {
    const { client, repo } = this.deps;
    const ignored: Result = { outcome: "ignored", customerId: null };
    let found = t.stripeCustomerId === null ? undefined : await repo.customerByStripeId(t.stripeCustomerId, tx);
    if (found === undefined) {
      // Not mapped yet (e.g. checkout completed before we stored the Stripe id): fall back to our
      // id in the metadata, from the event or from the subscription itself.
      let candidate = t.ourCustomerId;
      if (candidate === null) candidate = ourId((await client.retrieveSubscription(t.subscriptionId))?.ourCustomerId);
      if (candidate === null) return ignored;
      found = await repo.customer(candidate, tx);
      if (found === undefined) return ignored;
    }
    const row = await repo.customerForUpdate(tx, found.id);
    if (row === undefined) return ignored;
    const mine: Result = { outcome: "ignored", customerId: row.id };

    const snap = await client.retrieveSubscription(t.subscriptionId);
    if (snap === null) {
      // Stripe no longer knows it: only meaningful if it is the one we hold.
      if (row.stripeSubscriptionId !== t.subscriptionId) return mine;
      return this.apply(tx, row, gone(row), { event, effects, attach: null, stale: false, invoice: t.invoice });
    }
    let attach: string | null = null;
    if (snap.customerId !== row.stripeCustomerId) {
      // Attach a Stripe customer found through our metadata only to a row without one, and only
      // for a subscription worth tracking (a dead one would link a deleted Stripe customer).
      if (row.stripeCustomerId !== null) return mine;
      if (!isLive(snap.status) && snap.status !== "incomplete") return mine;
      const other = await repo.customerByStripeId(snap.customerId, tx);
      if (other !== undefined && other.id !== row.id) return mine;
      attach = snap.customerId;
    }
    let winner = snap;
    let stale = false;
    if (row.stripeSubscriptionId !== null && row.stripeSubscriptionId !== snap.id) {
      // Another subscription is current: the event's one replaces it only if it outranks it
      // (live over dead, then newest), judged on fresh snapshots of both.
      const current = await client.retrieveSubscription(row.stripeSubscriptionId);
      if (current !== null && current.customerId === snap.customerId && outranks(current, snap)) {
        winner = current;
        stale = true;
      }
    }
    return this.apply(tx, row, winner, { event, effects, attach, stale, invoice: t.invoice });
  }

  private async apply(
    tx: Db,
    row: BillingCustomer,
    snap: SubscriptionSnapshot,
    opts: {
      event: { readonly id: string; readonly type: string };
      effects: Effects;
      attach: string | null;
      stale: boolean;
      invoice: InvoiceRef | null;
    },
  ): Promise<Result> {
    const { prices, graceDays, log, metrics, publicBaseUrl } = this.deps;
    const now = this.deps.now();
    const sameSubscription = row.stripeSubscriptionId === snap.id;
    const previousStatus = sameSubscription ? row.subscriptionStatus : null;
    const previousGrace =
      sameSubscription && row.subscriptionStatus === "past_due" && row.graceUntil !== null
        ? row.graceUntil.getTime()
        : null;
    const graceUntil = graceUntilFor(snap.status, previousGrace, now, graceDays);
    const paidTier = tierForPrice(prices, snap.priceId);
    // Switching away from another subscription means that one is dead (it would have outranked
    // this one otherwise): its tier is not ours to keep, so "unchanged" starts from free.
    const currentTier: Tier = row.stripeSubscriptionId !== null && !sameSubscription ? "free" : row.tier;
    let outcome: WebhookOutcome = opts.stale ? "stale" : "applied";
    let tier: Tier;
    if (paidTier === undefined && !KEEPS_TIER_ON_UNKNOWN_PRICE.has(snap.status)) {
      // Ended, unpaid or paused: no paid tier whatever the price.
      tier = "free";
    } else if (paidTier === undefined) {
      tier = currentTier;
      outcome = "unknown_price";
      metrics.unknownPrice();
      log.warn(
        { event_id: opts.event.id, customer_id: row.id, subscription: snap.id, price: snap.priceId },
        "stripe webhook: subscription price is not configured (STRIPE_PRICE_*); tier left unchanged",
      );
    } else {
      tier = tierFor({ status: snap.status, paidTier, currentTier, graceUntil, now });
    }
    const fields: SubscriptionFields = {
      stripeCustomerId: opts.attach ?? row.stripeCustomerId,
      stripeSubscriptionId: snap.id,
      subscriptionStatus: snap.status,
      stripePriceId: snap.priceId,
      subscriptionUnitAmount: snap.unitAmount,
      subscriptionCurrency: snap.currency,
      subscriptionInterval: snap.interval,
      mrrMinor: monthlyAmount({
        status: snap.status,
        unitAmount: snap.unitAmount,
        quantity: snap.quantity ?? 1,
        interval: snap.interval,
        intervalCount: snap.intervalCount ?? 1,
      }),
      currentPeriodStart: snap.currentPeriodStart === null ? null : new Date(snap.currentPeriodStart * 1000),
      currentPeriodEnd: snap.currentPeriodEnd === null ? null : new Date(snap.currentPeriodEnd * 1000),
      cancelAtPeriodEnd: snap.cancelAtPeriodEnd,
      graceUntil: graceUntil === null ? null : new Date(graceUntil),
      subscriptionSyncedAt: new Date(now),
      tier,
    };
    await writeSubscription(tx, row.id, fields);
    await recordSubscriptionChange(tx, {
      customerId: row.id,
      source: opts.event.type === "reconcile" ? "reconcile" : "webhook",
      snap,
      priceTier: paidTier,
      now: new Date(now),
    });

    const { effects } = opts;
    const email = (render: (to: string) => EmailMessage) => effects.emails.push({ customerId: row.id, render });
    if (tier !== row.tier) {
      effects.changed.add(row.id);
      await auditTierChange(tx, row.id, row.tier, tier, opts.event, snap.status);
    }
    const wasFailing = previousStatus === "past_due" || previousStatus === "unpaid";
    if (wasFailing && (snap.status === "active" || snap.status === "trialing")) {
      email((to) => paymentRecoveredEmail(to, { tier }));
    } else if (dead(snap.status) && previousStatus !== null && !dead(previousStatus)) {
      email((to) => subscriptionCanceledEmail(to, { publicBaseUrl }));
    } else if (tier === "free" && row.tier !== "free") {
      const reason =
        snap.status === "unpaid"
          ? "unpaid"
          : snap.status === "paused"
            ? "paused"
            : snap.status === "past_due"
              ? "grace_expired"
              : "other";
      email((to) => downgradedEmail(to, { reason, publicBaseUrl }));
    }
    const type = opts.event.type;
    const inv = opts.invoice;
    if (
      inv !== null &&
      inv.subscriptionId === snap.id &&
      (type === "invoice.payment_failed" || type === "invoice.payment_action_required")
    ) {
      // Mail only while the invoice is still open: a late failure event for a since-paid invoice says nothing.
      const invoice = await this.deps.client.retrieveInvoice(inv.id);
      if (invoice !== null && invoice.status === "open") {
        const hostedInvoiceUrl = invoice.hostedInvoiceUrl;
        if (type === "invoice.payment_failed") {
          email((to) => paymentFailedEmail(to, { hostedInvoiceUrl, graceUntil, tier, publicBaseUrl }));
        } else {
          email((to) => paymentActionRequiredEmail(to, { hostedInvoiceUrl, publicBaseUrl }));
        }
      }
    }
    return { outcome, customerId: row.id };
  }

  /** Deleted in Stripe's dashboard: forget the Stripe ids and the subscription; tier free (overrides kept). */
  private async customerDeleted(
    tx: Db,
    event: { readonly id: string; readonly type: string },
    o: Readonly<Record<string, unknown>>,
    effects: Effects,
  ): Promise<Result> {
    const stripeCustomerId = ref(o.id, "cus_");
    if (stripeCustomerId === null) return { outcome: "ignored", customerId: null };
    const found = await this.deps.repo.customerByStripeId(stripeCustomerId, tx);
    if (found === undefined) return { outcome: "ignored", customerId: null };
    const row = await this.deps.repo.customerForUpdate(tx, found.id);
    if (row === undefined || row.stripeCustomerId !== stripeCustomerId) return { outcome: "ignored", customerId: null };
    await writeSubscription(tx, row.id, {
      stripeCustomerId: null,
      stripeSubscriptionId: null,
      subscriptionStatus: null,
      stripePriceId: null,
      subscriptionUnitAmount: null,
      subscriptionCurrency: null,
      subscriptionInterval: null,
      mrrMinor: 0,
      currentPeriodStart: null,
      currentPeriodEnd: null,
      cancelAtPeriodEnd: false,
      graceUntil: null,
      subscriptionSyncedAt: new Date(this.deps.now()),
      tier: "free",
    });
    await recordSubscriptionChange(tx, {
      customerId: row.id,
      source: "stripe_customer_deleted",
      snap: null,
      priceTier: undefined,
      now: new Date(this.deps.now()),
    });
    if (row.tier !== "free") {
      effects.changed.add(row.id);
      await auditTierChange(tx, row.id, row.tier, "free", event, null);
      const publicBaseUrl = this.deps.publicBaseUrl;
      effects.emails.push({ customerId: row.id, render: (to) => subscriptionCanceledEmail(to, { publicBaseUrl }) });
    }
    return { outcome: "applied", customerId: row.id };
  }
}

/**
 * `customer.tier_change`, in the transaction that changes the tier. Source `stripe` (a webhook
 * event, whose id is kept) or `stripe_reconcile` (reconciliation, including its dry runs, which
 * roll the entry back with the change).
 */
async function auditTierChange(
  tx: Db,
  customerId: string,
  from: Tier,
  to: Tier,
  event: { readonly id: string; readonly type: string },
  status: string | null,
): Promise<void> {
  const reconcile = event.type === "reconcile";
  await recordAudit(tx, {
    action: "customer.tier_change",
    targetType: "customer",
    targetId: customerId,
    customerId,
    details: {
      from,
      to,
      source: reconcile ? "stripe_reconcile" : "stripe",
      ...(reconcile ? {} : { stripe_event_type: event.type }),
      ...(reconcile ? {} : { stripe_event_id: event.id }),
      ...(status === null ? {} : { subscription_status: status }),
    },
  });
}

/** The snapshot of a subscription Stripe no longer has: ended. */
function gone(row: BillingCustomer): SubscriptionSnapshot {
  return {
    id: row.stripeSubscriptionId as string,
    customerId: row.stripeCustomerId ?? "",
    status: "canceled" satisfies StripeSubscriptionStatus,
    priceId: row.stripePriceId ?? "",
    unitAmount: null,
    currency: "usd",
    interval: null,
    currentPeriodStart: row.currentPeriodStart === null ? null : Math.floor(row.currentPeriodStart.getTime() / 1000),
    currentPeriodEnd: row.currentPeriodEnd === null ? null : Math.floor(row.currentPeriodEnd.getTime() / 1000),
    cancelAtPeriodEnd: false,
    created: 0,
    ourCustomerId: null,
    latestInvoiceId: null,
  };
}
