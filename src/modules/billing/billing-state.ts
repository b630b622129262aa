import type { Tier } from "../../platform/auth.ts";
import type { StripeSubscriptionStatus } from "./billing-client.ts";

/**
 * The billing state machine, as pure functions (docs/billing.md has the diagram). Stripe owns
 * the subscription; we keep a copy on the customer row and derive the tier from it:
 *
 *   none --checkout--> incomplete --paid--> active <--> trialing
 *   active --payment failed--> past_due (grace: paid tier kept until grace_until)
 *   past_due --paid--> active            past_due --grace over--> (tier free, status kept)
 *   any --deleted / unpaid / incomplete_expired / paused--> free
 */

/** The status the API reports (`GET /v1/billing/subscription`). */
export type BillingStatus =
  | "none"
  | "trialing"
  | "active"
  | "past_due"
  | "canceled"
  | "unpaid"
  | "paused"
  | "incomplete";

export function apiStatus(stripeStatus: string | null): BillingStatus {
  switch (stripeStatus) {
    case null:
      return "none";
    case "incomplete_expired":
      return "canceled";
    case "trialing":
    case "active":
    case "past_due":
    case "canceled":
    case "unpaid":
    case "paused":
    case "incomplete":
      return stripeStatus;
    default:
      return "none";
  }
}

/** Statuses in which the customer still has a subscription to manage: checkout must go to the portal. */
export function blocksCheckout(stripeStatus: string | null): boolean {
  return (
    stripeStatus === "active" ||
    stripeStatus === "trialing" ||
    stripeStatus === "past_due" ||
    stripeStatus === "unpaid" ||
    stripeStatus === "paused" ||
    stripeStatus === "incomplete"
  );
}

/** Statuses where the subscription is alive (a newer subscription must not be replaced by an older dead one). */
export function isLive(stripeStatus: string | null): boolean {
  return stripeStatus === "active" || stripeStatus === "trialing" || stripeStatus === "past_due";
}

export interface PriceTable {
  readonly pro: readonly string[];
  readonly enterprise: readonly string[];
}

/** The tier a price sells; undefined for a price we do not know (logged, counted, tier unchanged). */
export function tierForPrice(prices: PriceTable, priceId: string): Exclude<Tier, "free"> | undefined {
  if (prices.pro.includes(priceId)) return "pro";
  if (prices.enterprise.includes(priceId)) return "enterprise";
  return undefined;
}

export interface TierInput {
  readonly status: StripeSubscriptionStatus;
  /** The tier of the subscription's price (known price). */
  readonly paidTier: Exclude<Tier, "free">;
  /** The tier the customer has now. */
  readonly currentTier: Tier;
  /** ms since epoch; null when not past due. */
  readonly graceUntil: number | null;
  readonly now: number;
}

/**
 * The tier a customer should have given its subscription. `incomplete` (first payment pending)
 * neither grants nor removes anything: checkout completes into `active` or expires.
 */
export function tierFor(input: TierInput): Tier {
  switch (input.status) {
    case "active":
    case "trialing":
      return input.paidTier;
    case "past_due":
      return input.graceUntil !== null && input.now < input.graceUntil ? input.paidTier : "free";
    case "incomplete":
      return input.currentTier;
    default:
      return "free";
  }
}

/**
 * Grace deadline after a status change: starts on the first move into past_due and is kept
 * while past due (repeated failures do not extend it); cleared in any other status.
 */
export function graceUntilFor(
  status: StripeSubscriptionStatus,
  previousGraceUntil: number | null,
  now: number,
  graceDays: number,
): number | null {
  if (status !== "past_due") return null;
  return previousGraceUntil ?? now + graceDays * 86_400_000;
}
