import { desc, eq } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { subscriptionChanges } from "../../platform/db/schema/index.ts";
import type { SubscriptionSnapshot } from "./billing-client.ts";

/** Statuses whose subscription counts in MRR: paying (`active`) or owed (`past_due`, at risk). */
const COUNTED: ReadonlySet<string> = new Set(["active", "past_due"]);

/** Intervals per month: a yearly price is 1/12 of its amount a month, a weekly one 52/12 times. */
const PER_MONTH: Readonly<Record<string, number>> = { day: 365 / 12, week: 52 / 12, month: 1, year: 1 / 12 };

export interface MrrInput {
  readonly status: string | null;
  readonly unitAmount: number | null;
  readonly quantity: number;
  readonly interval: string | null;
  readonly intervalCount: number;
}

/**
 * The monthly recurring revenue of one subscription, in minor units (cents), rounded to a whole
 * unit: `unit_amount * quantity * (intervals per month) / interval_count` while the status is
 * `active` or `past_due`, else 0 (trialing, incomplete, paused, unpaid, canceled: nothing is
 * being paid). A price without a unit amount (metered, tiered) or a recurring interval gives 0.
 * Discounts are not applied: the stored state does not carry them (docs/admin.md, "Revenue").
 */
export function monthlyAmount(s: MrrInput): number {
  if (s.status === null || !COUNTED.has(s.status)) return 0;
  if (s.unitAmount === null || s.interval === null) return 0;
  const perMonth = PER_MONTH[s.interval];
  if (perMonth === undefined) return 0;
  return Math.round((s.unitAmount * s.quantity * perMonth) / Math.max(1, s.intervalCount));
}

export interface ChangeInput {
  readonly customerId: string;
  readonly source: "webhook" | "reconcile" | "stripe_customer_deleted";
  /** The snapshot applied; null when the Stripe customer (and so the subscription) is gone. */
  readonly snap: SubscriptionSnapshot | null;
  /** The tier the snapshot's price sells; undefined for a price not configured. */
  readonly priceTier: string | undefined;
  readonly now: Date;
}

/**
 * Appends a `subscription_changes` row when what counts for revenue changed (price, quantity,
 * interval, status, tier, MRR or currency) since the customer's last row; inside the caller's
 * transaction, which holds the customer's row lock, so concurrent deliveries queue. The first row
 * of a customer starts from 0. Returns whether a row was written.
 */
export async function recordSubscriptionChange(tx: Db, c: ChangeInput): Promise<boolean> {
  const [last] = await tx
    .select()
    .from(subscriptionChanges)
    .where(eq(subscriptionChanges.customerId, c.customerId))
    .orderBy(desc(subscriptionChanges.at), desc(subscriptionChanges.id))
    .limit(1);
  const s = c.snap;
  const next = {
    stripeSubscriptionId: s?.id ?? null,
    stripePriceId: s?.priceId ?? null,
    status: s?.status ?? null,
    priceTier: c.priceTier ?? null,
    unitAmount: s?.unitAmount ?? null,
    quantity: s?.quantity ?? 1,
    interval: s?.interval ?? null,
    intervalCount: s?.intervalCount ?? 1,
    currencyAfter: s === null ? null : s.currency,
  };
  const mrrAfter =
    s === null
      ? 0
      : monthlyAmount({
          status: s.status,
          unitAmount: s.unitAmount,
          quantity: next.quantity,
          interval: s.interval,
          intervalCount: next.intervalCount,
        });
  if (last === undefined && s === null) return false;
  if (
    last !== undefined &&
    last.stripeSubscriptionId === next.stripeSubscriptionId &&
    last.stripePriceId === next.stripePriceId &&
    last.status === next.status &&
    last.priceTier === next.priceTier &&
    last.unitAmount === next.unitAmount &&
    last.quantity === next.quantity &&
    last.interval === next.interval &&
    last.intervalCount === next.intervalCount &&
    last.currencyAfter === next.currencyAfter &&
    last.mrrAfter === mrrAfter
  ) {
    return false;
  }
  // Never earlier than the previous row: "the latest row" stays the current state whatever the clock did.
  const at = last !== undefined && last.at.getTime() > c.now.getTime() ? last.at : c.now;
  await tx.insert(subscriptionChanges).values({
    customerId: c.customerId,
    at,
    source: c.source,
    ...next,
    mrrBefore: last?.mrrAfter ?? 0,
    currencyBefore: last?.currencyAfter ?? null,
    mrrAfter,
  });
  return true;
}
