import type { Tier } from "../../platform/auth.ts";

/** A customer's limits; null means unlimited. */
export interface Limits {
  readonly perMinute: number | null;
  readonly perDay: number | null;
  readonly perMonth: number | null;
}

/** Published defaults per tier (docs/rate-limits.md). Keep in step with billing's price table. */
export const TIER_LIMITS: Readonly<Record<Tier, Limits>> = {
  free: { perMinute: 10, perDay: 1_000, perMonth: 10_000 },
  pro: { perMinute: 100, perDay: 10_000, perMonth: 100_000 },
  enterprise: { perMinute: 1_000, perDay: 100_000, perMonth: null },
};

/** The customer row's override columns; null keeps the tier default. */
export interface LimitOverrides {
  readonly rateLimitPerMinute: number | null;
  readonly quotaPerDay: number | null;
  readonly quotaPerMonth: number | null;
}

export function effectiveLimits(tier: Tier, overrides: LimitOverrides): Limits {
  const base = TIER_LIMITS[tier];
  return {
    perMinute: overrides.rateLimitPerMinute ?? base.perMinute,
    perDay: overrides.quotaPerDay ?? base.perDay,
    perMonth: overrides.quotaPerMonth ?? base.perMonth,
  };
}

export type WindowName = "minute" | "day" | "month";
export const WINDOWS: readonly WindowName[] = ["minute", "day", "month"];
export const WINDOW_SECONDS: Readonly<Record<WindowName, number>> = {
  minute: 60,
  day: 86_400,
  // A nominal 30-day month for the policy header; the quota itself is the UTC calendar month.
  month: 2_592_000,
};

export function limitOf(limits: Limits, w: WindowName): number | null {
  return w === "minute" ? limits.perMinute : w === "day" ? limits.perDay : limits.perMonth;
}
