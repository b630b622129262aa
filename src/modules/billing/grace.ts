import { and, eq, inArray, lt, ne, sql } from "drizzle-orm";
import { recordAudit } from "../../platform/audit.ts";
import type { Db } from "../../platform/db/client.ts";
import { customers } from "../../platform/db/schema/index.ts";
import type { EmailMessage } from "../../platform/email.ts";
import type { BillingRepo } from "./billing.repo.ts";
import { downgradedEmail } from "./dunning.emails.ts";
import { BILLING_LOCKS, type BillingTask, withJobLock } from "./jobs.ts";

export interface GraceDeps {
  readonly db: Db;
  readonly repo: BillingRepo;
  readonly now: () => number;
  readonly publicBaseUrl: string;
  readonly customerChanged: (customerId: string) => Promise<void>;
  readonly sendEmail: (message: EmailMessage) => void;
  /** Counts customers dropped to free. */
  readonly onDowngrade: (count: number) => void;
}

/**
 * Dunning's end: customers still past due after their grace deadline drop to `free` (status,
 * subscription and per-customer overrides kept, so a later payment restores the paid tier
 * through the webhook). One instance at a time (advisory lock); the UPDATE re-checks its
 * condition on each row, so a webhook recovering the customer concurrently wins.
 */
export function graceTask(deps: GraceDeps): BillingTask {
  return {
    name: "grace",
    async run() {
      let ids: string[] = [];
      await withJobLock(deps.db, BILLING_LOCKS.grace, async (tx) => {
        const due = and(
          eq(customers.subscriptionStatus, "past_due"),
          lt(customers.graceUntil, new Date(deps.now())),
          ne(customers.tier, "free"),
        );
        // The tiers before the change, for the audit log (UPDATE ... RETURNING gives the new ones).
        const before = await tx
          .select({ id: customers.id, tier: customers.tier })
          .from(customers)
          .where(due)
          .for("update");
        if (before.length === 0) return;
        const rows = await tx
          .update(customers)
          .set({ tier: "free", updatedAt: sql`now()` })
          .where(
            and(
              due,
              inArray(
                customers.id,
                before.map((r) => r.id),
              ),
            ),
          )
          .returning({ id: customers.id });
        ids = rows.map((r) => r.id);
        const from = new Map(before.map((r) => [r.id, r.tier]));
        for (const id of ids) {
          await recordAudit(tx, {
            action: "customer.tier_change",
            targetType: "customer",
            targetId: id,
            customerId: id,
            details: { from: from.get(id), to: "free", source: "grace_expired" },
          });
        }
      });
      if (ids.length === 0) return;
      deps.onDowngrade(ids.length);
      for (const id of ids) {
        await deps.customerChanged(id);
        const to = await deps.repo.ownerEmail(id);
        if (to !== undefined) {
          deps.sendEmail(downgradedEmail(to, { reason: "grace_expired", publicBaseUrl: deps.publicBaseUrl }));
        }
      }
    },
  };
}
