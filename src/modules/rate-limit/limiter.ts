import type { CalendarWindows } from "./calendar.ts";
import type { Limits, WindowName } from "./policy.ts";

/** What one check-and-consume (or a peek) tells the caller. */
export interface LimitResult {
  readonly allowed: boolean;
  readonly violated: readonly WindowName[];
  readonly retryAfterMs: number;
  readonly minuteRemaining: number;
  readonly minuteResetMs: number;
  /** Requests counted in the current UTC day and month, after this one when allowed. */
  readonly day: number;
  readonly month: number;
}

export interface LimitRequest {
  readonly customerId: string;
  readonly limits: Limits;
  readonly now: number;
  readonly cal: CalendarWindows;
  /** The durable month count, given when the limiter asked for it ("needs-seed"). */
  readonly monthSeed?: number;
  /** 0 peeks without consuming. */
  readonly cost: number;
}

/**
 * A limiter backend: the Redis one (shared by every instance) or the in-process one. Both
 * answer "needs-seed" when they have no month counter for the customer yet; the caller then
 * reads the durable count from the database and asks again with `monthSeed`.
 */
export interface Limiter {
  check(request: LimitRequest): Promise<LimitResult | "needs-seed"> | LimitResult | "needs-seed";
}
