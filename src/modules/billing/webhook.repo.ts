import { asc, eq, isNotNull, sql } from "drizzle-orm";
import type { Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import { customers, stripeEvents } from "../../platform/db/schema/index.ts";

/** The subscription copy on a customer row, as the webhook writes it. */
export interface SubscriptionFields {
  readonly stripeCustomerId: string | null;
  readonly stripeSubscriptionId: string | null;
  readonly subscriptionStatus: string | null;
  readonly stripePriceId: string | null;
  /** The price's amount, currency and interval (the admin list's MRR); left as they are when omitted. */
  readonly subscriptionUnitAmount?: number | null;
  readonly mrrMinor?: number;
  readonly subscriptionCurrency?: string | null;
  readonly subscriptionInterval?: string | null;
  readonly currentPeriodStart: Date | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly graceUntil: Date | null;
  readonly subscriptionSyncedAt: Date | null;
  readonly tier: Tier;
}

/**
 * Days a `stripe_events` row is kept after it was received, for deduplication (the retention job
 * prunes older ones): ten times Stripe's 3-day retry window, and the 30 days its events API keeps
 * (https://docs.stripe.com/webhooks/process-undelivered-events). Counted from our `received_at`,
 * at or after Stripe's `created`. Nothing else reads the rows: ordering is judged on fresh Stripe
 * snapshots, so even a later redelivery handled as new only re-syncs the current state.
 */
export const STRIPE_EVENT_RETENTION_DAYS = 30;

/**
 * Claims an event id inside the caller's transaction: true the first time, false when the id is
 * already recorded. A concurrent delivery of the same id waits here for the first transaction and
 * then finds it (or, if that one rolled back, claims it itself).
 */
export async function claimEvent(tx: Db, event: { id: string; type: string; created: number }): Promise<boolean> {
  const rows = await tx
    .insert(stripeEvents)
    .values({ id: event.id, type: event.type, createdAt: new Date(event.created * 1000), outcome: "processing" })
    .onConflictDoNothing()
    .returning({ id: stripeEvents.id });
  return rows.length > 0;
}

export async function finishEvent(tx: Db, id: string, outcome: string, customerId: string | null): Promise<void> {
  await tx.update(stripeEvents).set({ outcome, customerId }).where(eq(stripeEvents.id, id));
}

export async function writeSubscription(tx: Db, customerId: string, f: SubscriptionFields): Promise<void> {
  await tx
    .update(customers)
    .set({ ...f, updatedAt: sql`now()` })
    .where(eq(customers.id, customerId));
}

/** Ids of the customers linked to a Stripe customer (reconciliation). */
export async function customersWithStripe(db: Db): Promise<string[]> {
  const rows = await db
    .select({ id: customers.id })
    .from(customers)
    .where(isNotNull(customers.stripeCustomerId))
    .orderBy(asc(customers.createdAt));
  return rows.map((r) => r.id);
}
