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

/**
 * A customer's stream allowances: session time (robot-seconds, summed over all its sessions)
 * per UTC day and month, and the frame-rate ceiling of one session; null means unlimited.
 */
export interface StreamAllowance {
  readonly secondsPerDay: number | null;
  readonly secondsPerMonth: number | null;
  readonly maxFps: number | null;
}

/** Published stream defaults per tier (docs/rate-limits.md, "Stream time"). */
export const TIER_STREAM: Readonly<Record<Tier, StreamAllowance>> = {
  free: { secondsPerDay: 30 * 60, secondsPerMonth: 5 * 3_600, maxFps: 15 },
  pro: { secondsPerDay: 8 * 3_600, secondsPerMonth: 200 * 3_600, maxFps: 30 },
  enterprise: { secondsPerDay: null, secondsPerMonth: null, maxFps: 100 },
};

/** The customer row's stream override columns; null keeps the tier default. */
export interface StreamOverrides {
  readonly streamSecondsPerDay: number | null;
  readonly streamSecondsPerMonth: number | null;
  readonly streamMaxFps: number | null;
}

export function effectiveStreamAllowance(tier: Tier, overrides: StreamOverrides): StreamAllowance {
  const base = TIER_STREAM[tier];
  return {
    secondsPerDay: overrides.streamSecondsPerDay ?? base.secondsPerDay,
    secondsPerMonth: overrides.streamSecondsPerMonth ?? base.secondsPerMonth,
    maxFps: overrides.streamMaxFps ?? base.maxFps,
  };
}
