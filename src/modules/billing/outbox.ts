import { and, eq, isNull, lte, sql } from "drizzle-orm";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Db } from "../../platform/db/client.ts";
import {
  billingMeterReports,
  billingOutbox,
  billingUsageAlerts,
  customers,
  stripeEvents,
} from "../../platform/db/schema/index.ts";
import type { DeletionHook } from "../../platform/deletion.ts";
import type { BillingClient } from "./billing-client.ts";
import type { BillingTask } from "./jobs.ts";

interface Logger {
  warn(obj: object, msg: string): void;
}

/** First retry after this long, doubling per attempt up to `MAX_BACKOFF_MS`. */
export const OUTBOX_BASE_BACKOFF_MS = 30_000;
export const OUTBOX_MAX_BACKOFF_MS = 6 * 3_600_000;
/** A claimed row is retried after this long if the instance working on it died. */
const LEASE_MS = 5 * 60_000;
const BATCH = 20;

export function outboxBackoffMs(attempts: number): number {
  return Math.min(OUTBOX_MAX_BACKOFF_MS, OUTBOX_BASE_BACKOFF_MS * 2 ** Math.max(0, attempts - 1));
}

/** An error for `last_error`: its class and our message, never a key or a request body. */
function describe(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : "unknown error";
  return text.replace(/\b(sk|rk|whsec)_[A-Za-z0-9_]+/g, "$1_***").slice(0, 300);
}

/**
 * The erasure half of billing (docs/billing.md, "Erasure"): the `billing` deletion hook writes an
 * `erase_customer` outbox row in the erasure transaction (Stripe ids only), unlinks the
 * customer's recorded Stripe events and deletes its meter reports and quota alerts. Stripe is
 * told after the commit, never inside it: a Stripe outage cannot block or roll back an erasure.
 */
export function billingDeletionHook(opts: { now: () => number; outbox: () => StripeOutbox | null }): DeletionHook {
  return {
    name: "billing",
    async deleteCustomer({ tx, customerId }) {
      const rows = await tx
        .select({ cus: customers.stripeCustomerId, sub: customers.stripeSubscriptionId })
        .from(customers)
        .where(eq(customers.id, customerId));
      const ids = rows[0];
      let outbox = 0;
      if (ids !== undefined && (ids.cus !== null || ids.sub !== null)) {
        await tx.insert(billingOutbox).values({
          kind: "erase_customer",
          stripeCustomerId: ids.cus,
          stripeSubscriptionId: ids.sub,
          nextAttemptAt: new Date(opts.now()),
        });
        outbox = 1;
      }
      const events = await tx
        .update(stripeEvents)
        .set({ customerId: null })
        .where(eq(stripeEvents.customerId, customerId))
        .returning({ id: stripeEvents.id });
      const reports = await tx
        .delete(billingMeterReports)
        .where(eq(billingMeterReports.customerId, customerId))
        .returning({ meter: billingMeterReports.meter });
      const alerts = await tx
        .delete(billingUsageAlerts)
        .where(eq(billingUsageAlerts.customerId, customerId))
        .returning({ meter: billingUsageAlerts.meter });
      return {
        billing_outbox: outbox,
        stripe_events_unlinked: events.length,
        billing_meter_reports: reports.length,
        billing_usage_alerts: alerts.length,
      };
    },
    async afterCommit({ wholeCustomer }) {
      // Best effort: Stripe is asked now; a failure leaves the row for the job's retries.
      const outbox = opts.outbox();
      if (wholeCustomer && outbox !== null) await outbox.run();
    },
  };
}

export interface StripeOutboxDeps {
  readonly db: Db;
  readonly client: BillingClient;
  readonly now: () => number;
  readonly log: Logger;
  readonly registry: Registry;
  readonly onStripeFailure?: (operation: string) => void;
}

/**
 * The billing_outbox worker (a billing job task): claims due rows (FOR UPDATE SKIP LOCKED, then a
 * short lease so another instance skips them), cancels the subscription now and deletes the
 * Stripe customer (both treat "already gone" as done), marks the row done. A failure counts an
 * attempt and backs off exponentially (30 s doubling, at most 6 h), keeping the error text.
 */
export class StripeOutbox implements BillingTask {
  readonly name = "outbox";
  private readonly deps: StripeOutboxDeps;
  private readonly pendingGauge: Gauge;
  private readonly failures: Counter<"kind">;

  constructor(deps: StripeOutboxDeps) {
    this.deps = deps;
    this.pendingGauge = new Gauge({
      name: "vla_billing_outbox_pending",
      help: "Billing outbox rows (Stripe erasures) not done yet, as of the last outbox run.",
      registers: [deps.registry],
    });
    this.failures = new Counter({
      name: "vla_billing_outbox_failures_total",
      help: "Billing outbox attempts that failed (retried with exponential backoff), by kind.",
      labelNames: ["kind"],
      registers: [deps.registry],
    });
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        const rows = await this.claim();
        for (const row of rows) await this.process(row);
        if (rows.length < BATCH) break;
      }
    } finally {
      await this.refreshGauge();
    }
  }

  private async claim() {
    const { db } = this.deps;
    const now = new Date(this.deps.now());
    const lease = new Date(this.deps.now() + LEASE_MS);
    return db.transaction(async (tx) => {
      const due = await tx
        .select({ id: billingOutbox.id })
        .from(billingOutbox)
        .where(and(isNull(billingOutbox.doneAt), lte(billingOutbox.nextAttemptAt, now)))
        .orderBy(billingOutbox.nextAttemptAt)
        .limit(BATCH)
        .for("update", { skipLocked: true });
      if (due.length === 0) return [];
      return tx
        .update(billingOutbox)
        .set({ nextAttemptAt: lease })
        .where(
          sql`${billingOutbox.id} in (${sql.join(
            due.map((d) => sql`${d.id}`),
            sql`, `,
          )})`,
        )
        .returning();
    });
  }

  private async process(row: typeof billingOutbox.$inferSelect): Promise<void> {
    const { db, client } = this.deps;
    let operation = "outbox";
    try {
      if (row.kind !== "erase_customer") throw new Error(`unknown outbox kind ${row.kind}`);
      if (row.stripeSubscriptionId !== null) {
        operation = "cancel_subscription";
        await client.cancelSubscription(row.stripeSubscriptionId);
      }
      if (row.stripeCustomerId !== null) {
        operation = "delete_customer";
        await client.deleteCustomer(row.stripeCustomerId);
      }
      await db
        .update(billingOutbox)
        .set({ doneAt: new Date(this.deps.now()), lastError: null })
        .where(eq(billingOutbox.id, row.id));
    } catch (err) {
      const attempts = row.attempts + 1;
      this.failures.inc({ kind: row.kind });
      this.deps.onStripeFailure?.(operation);
      this.deps.log.warn(
        { err, outbox_id: row.id, kind: row.kind, attempts },
        "billing outbox attempt failed; retried with backoff",
      );
      await db
        .update(billingOutbox)
        .set({
          attempts,
          lastError: describe(err),
          nextAttemptAt: new Date(this.deps.now() + outboxBackoffMs(attempts)),
        })
        .where(eq(billingOutbox.id, row.id));
    }
  }

  private async refreshGauge(): Promise<void> {
    const rows = await this.deps.db
      .select({ n: sql<number>`count(*)::int` })
      .from(billingOutbox)
      .where(isNull(billingOutbox.doneAt));
    this.pendingGauge.set(Number(rows[0]?.n ?? 0));
  }
}
