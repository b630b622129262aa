import { and, eq, isNull, or, sql } from "drizzle-orm";
import type { Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import { customers, users } from "../../platform/db/schema/index.ts";

/** The billing columns of a customer row. */
export interface BillingCustomer {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly tier: Tier;
  readonly stripeCustomerId: string | null;
  readonly stripeSubscriptionId: string | null;
  readonly subscriptionStatus: string | null;
  readonly stripePriceId: string | null;
  readonly currentPeriodStart: Date | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly graceUntil: Date | null;
  readonly subscriptionSyncedAt: Date | null;
  readonly overageEnabled: boolean;
  readonly overageCapRequests: number | null;
  readonly overageCapStreamSeconds: number | null;
  readonly quotaPerMonth: number | null;
  readonly streamSecondsPerMonth: number | null;
}

const billingColumns = {
  id: customers.id,
  name: customers.name,
  email: customers.email,
  tier: customers.tier,
  stripeCustomerId: customers.stripeCustomerId,
  stripeSubscriptionId: customers.stripeSubscriptionId,
  subscriptionStatus: customers.subscriptionStatus,
  stripePriceId: customers.stripePriceId,
  currentPeriodStart: customers.currentPeriodStart,
  currentPeriodEnd: customers.currentPeriodEnd,
  cancelAtPeriodEnd: customers.cancelAtPeriodEnd,
  graceUntil: customers.graceUntil,
  subscriptionSyncedAt: customers.subscriptionSyncedAt,
  overageEnabled: customers.overageEnabled,
  overageCapRequests: customers.overageCapRequests,
  overageCapStreamSeconds: customers.overageCapStreamSeconds,
  quotaPerMonth: customers.quotaPerMonth,
  streamSecondsPerMonth: customers.streamSecondsPerMonth,
};

export class BillingRepo {
  readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async customer(id: string, db: Db = this.db): Promise<BillingCustomer | undefined> {
    const rows = await db.select(billingColumns).from(customers).where(eq(customers.id, id)).limit(1);
    return rows[0];
  }

  /** The row, locked until the transaction ends: concurrent webhook deliveries for one customer queue here. */
  async customerForUpdate(tx: Db, id: string): Promise<BillingCustomer | undefined> {
    const rows = await tx.select(billingColumns).from(customers).where(eq(customers.id, id)).limit(1).for("update");
    return rows[0];
  }

  async customerByStripeId(stripeCustomerId: string, db: Db = this.db): Promise<BillingCustomer | undefined> {
    const rows = await db
      .select(billingColumns)
      .from(customers)
      .where(eq(customers.stripeCustomerId, stripeCustomerId))
      .limit(1);
    return rows[0];
  }

  /**
   * Stores the Stripe customer id unless another one is already there; returns the id the row
   * holds afterwards (two concurrent checkouts get the same Stripe customer through the
   * idempotency key, and whichever writes second keeps the first's value).
   */
  async attachStripeCustomer(id: string, stripeCustomerId: string): Promise<string | null> {
    await this.db
      .update(customers)
      .set({ stripeCustomerId, updatedAt: sql`now()` })
      .where(
        and(
          eq(customers.id, id),
          or(isNull(customers.stripeCustomerId), eq(customers.stripeCustomerId, stripeCustomerId)),
        ),
      );
    return (await this.customer(id))?.stripeCustomerId ?? null;
  }

  /** The account owner's address for billing mail; falls back to the customer's contact email. */
  async ownerEmail(customerId: string, db: Db = this.db): Promise<string | undefined> {
    const rows = await db
      .select({ email: users.email })
      .from(users)
      .where(and(eq(users.customerId, customerId), eq(users.role, "owner"), eq(users.isActive, true)))
      .orderBy(users.createdAt)
      .limit(1);
    return rows[0]?.email ?? (await this.customer(customerId, db))?.email;
  }
}
