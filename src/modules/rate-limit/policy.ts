import type { Tier } from "../../platform/auth.ts";

/** A customer's limits; null means unlimited. */
export interface Limits {
  readonly perMinute: number | null;
  readonly perDay: number | null;
  /** The hard month limit the limiter enforces: the included quota, plus the overage cap when overage is on. */
  readonly perMonth: number | null;
  /** Set while metered overage is on: `perMonth` = `included` + `cap` (docs/billing.md, "Overage"). */
  readonly overage?: Overage;
}

/** Metered overage of one meter: what the plan includes and how far beyond it the customer may go. */
export interface Overage {
  readonly included: number;
  readonly cap: number;
}

/** Tiers that may opt in to metered overage (the tiers with a metered price and a finite month quota). */
export const OVERAGE_TIERS: readonly Tier[] = ["pro"];

/** The customer row's overage columns (billing's settings route writes them). */
export interface OverageColumns {
  readonly overageEnabled: boolean;
  readonly overageCapRequests: number | null;
  readonly overageCapStreamSeconds: number | null;
}

/**
 * The overage a tier, included quota and the customer's columns grant: only for an overage tier
 * with a finite included quota and a positive cap, so a customer that drops to free (or to a tier
 * without a month quota) loses it at once even if its columns still say "on".
 */
export function overageOf(tier: Tier, included: number | null, enabled: boolean, cap: number | null): Overage | null {
  if (!enabled || !OVERAGE_TIERS.includes(tier) || included === null || cap === null || cap <= 0) return null;
  return { included, cap };
}

/** Published defaults per tier (docs/rate-limits.md). Keep in step with billing's price table. */
export const TIER_LIMITS: Readonly<Record<Tier, Limits>> = {
  free: { perMinute: 10, perDay: 1_000, perMonth: 10_000 },
  pro: { perMinute: 100, perDay: 10_000, perMonth: 100_000 },
  enterprise: { perMinute: 1_000, perDay: 100_000, perMonth: null },
};

/** The customer row's override columns (null keeps the tier default) and its overage opt-in. */
export interface LimitOverrides extends Omit<OverageColumns, "overageCapStreamSeconds"> {
  readonly rateLimitPerMinute: number | null;
  readonly quotaPerDay: number | null;
  readonly quotaPerMonth: number | null;
}

export function effectiveLimits(tier: Tier, overrides: LimitOverrides): Limits {
  const base = TIER_LIMITS[tier];
  const perMinute = overrides.rateLimitPerMinute ?? base.perMinute;
  const perDay = overrides.quotaPerDay ?? base.perDay;
  const included = overrides.quotaPerMonth ?? base.perMonth;
  const overage = overageOf(tier, included, overrides.overageEnabled, overrides.overageCapRequests);
  if (overage === null) return { perMinute, perDay, perMonth: included };
  return { perMinute, perDay, perMonth: overage.included + overage.cap, overage };
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

/**
 * A customer's stream allowances: session time (robot-seconds, summed over all its sessions)
 * per UTC day and month, and the frame-rate ceiling of one session; null means unlimited.
 */
export interface StreamAllowance {
  readonly secondsPerDay: number | null;
  /** The hard month allowance: included seconds, plus the stream overage cap when overage is on. */
  readonly secondsPerMonth: number | null;
  readonly maxFps: number | null;
  /** Set while stream overage is on: `secondsPerMonth` = `included` + `cap` (seconds). */
  readonly overage?: Overage;
}

/** Published stream defaults per tier (docs/rate-limits.md, "Stream time"). */
export const TIER_STREAM: Readonly<Record<Tier, StreamAllowance>> = {
  free: { secondsPerDay: 30 * 60, secondsPerMonth: 5 * 3_600, maxFps: 15 },
  pro: { secondsPerDay: 8 * 3_600, secondsPerMonth: 200 * 3_600, maxFps: 30 },
  enterprise: { secondsPerDay: null, secondsPerMonth: null, maxFps: 100 },
};

/** The customer row's stream override columns (null keeps the tier default) and its overage opt-in. */
export interface StreamOverrides extends Omit<OverageColumns, "overageCapRequests"> {
  readonly streamSecondsPerDay: number | null;
  readonly streamSecondsPerMonth: number | null;
  readonly streamMaxFps: number | null;
}

export function effectiveStreamAllowance(tier: Tier, overrides: StreamOverrides): StreamAllowance {
  const base = TIER_STREAM[tier];
  const secondsPerDay = overrides.streamSecondsPerDay ?? base.secondsPerDay;
  const maxFps = overrides.streamMaxFps ?? base.maxFps;
  const included = overrides.streamSecondsPerMonth ?? base.secondsPerMonth;
  const overage = overageOf(tier, included, overrides.overageEnabled, overrides.overageCapStreamSeconds);
  if (overage === null) return { secondsPerDay, secondsPerMonth: included, maxFps };
  return { secondsPerDay, secondsPerMonth: overage.included + overage.cap, maxFps, overage };
}
