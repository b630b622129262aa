import { eq } from "drizzle-orm";
import type { Db } from "./db/client.ts";
import { customers } from "./db/schema/index.ts";
import { type AppError, errors } from "./errors.ts";

/**
 * Customer suspension by the service operator (`customers.suspended_at`, `suspended_reason`;
 * docs/admin.md). The state travels with what every request already has in hand: the cached
 * API key entry and the cached account row of a session carry it, so the check costs nothing
 * per request. A change is published on the invalidation bus twice: the rate-limit module's
 * customer topic (every instance drops the customer's cached keys, limits and accounts) and
 * SUSPENSION_TOPIC (every instance closes the customer's open streams).
 */
export const SUSPENSION_TOPIC = "customer_suspension";

/** User topic: one user's cached account row (is_superuser, active) is dropped on every instance. */
export const USER_TOPIC = "user";

export interface Suspension {
  readonly at: Date;
  readonly reason: string;
}

/** The suspension of a row holding the two columns; null while active. */
export function suspensionOf(row: {
  readonly suspendedAt: Date | null;
  readonly suspendedReason: string | null;
}): Suspension | null {
  return row.suspendedAt === null ? null : { at: row.suspendedAt, reason: row.suspendedReason ?? "" };
}

/** The 403 `customer_suspended` problem for that suspension. */
export function suspendedError(s: Suspension): AppError {
  return errors.customerSuspended(s.reason, s.at.toISOString());
}

/** One customer's suspension, read from the database (stream closing; never on a request's path). */
export async function loadSuspension(db: Db, customerId: string): Promise<Suspension | null> {
  const rows = await db
    .select({ suspendedAt: customers.suspendedAt, suspendedReason: customers.suspendedReason })
    .from(customers)
    .where(eq(customers.id, customerId))
    .limit(1);
  const row = rows[0];
  return row === undefined ? null : suspensionOf(row);
}
