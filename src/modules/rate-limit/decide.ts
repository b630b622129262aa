import type { Limits, WindowName } from "./policy.ts";

/**
 * The limiter's arithmetic. The in-process limiter runs it; the Redis Lua script in
 * redis-limiter.ts mirrors its verdict part line for line (same doubles, same order), and the
 * Redis limiter replays it from the counters the script read for everything else, so both
 * limiters have the same semantics.
 *
 * Minute: GCRA (generic cell rate algorithm): one "theoretical arrival time" per customer.
 * Each request moves it forward by the emission interval T = 60 s / limit; a request is
 * allowed while TAT - now <= 60 s, so a full minute's quota may be spent in one burst and then
 * refills smoothly (one request every T). Day and month: fixed UTC calendar counters.
 * All three are checked first and consumed only when all pass.
 */
export const MINUTE_MS = 60_000;
/** Float tolerance for the GCRA comparison (ms); keeps "exactly limit per minute" exact. */
const EPSILON = 1e-6;

export interface CounterState {
  /** GCRA theoretical arrival time, ms since epoch (0 when unknown). */
  readonly tat: number;
  readonly day: number;
  readonly month: number;
}

export interface Decision {
  readonly allowed: boolean;
  readonly violated: readonly WindowName[];
  /** When rejected: ms until a retry can succeed. */
  readonly retryAfterMs: number;
  /** State after the decision (unchanged when rejected). */
  readonly state: CounterState;
  readonly minuteRemaining: number;
  /** ms until the minute bucket is full again. */
  readonly minuteResetMs: number;
}

export interface Horizon {
  readonly msUntilNextDay: number;
  readonly msUntilNextMonth: number;
}

export function minuteRemaining(limit: number | null, tat: number, now: number): number {
  if (limit === null) return Number.POSITIVE_INFINITY;
  if (limit <= 0) return 0;
  const interval = MINUTE_MS / limit;
  const used = Math.max(0, tat - now);
  return Math.max(0, Math.floor((MINUTE_MS - used) / interval + EPSILON));
}

export function decide(state: CounterState, limits: Limits, now: number, horizon: Horizon, cost = 1): Decision {
  const violated: WindowName[] = [];
  let retryAfterMs = 0;
  const tat = Math.max(state.tat, now);
  let newTat = tat;
  if (limits.perMinute !== null) {
    if (limits.perMinute <= 0) {
      violated.push("minute");
      retryAfterMs = MINUTE_MS;
    } else {
      newTat = tat + (MINUTE_MS / limits.perMinute) * cost;
      if (newTat - now > MINUTE_MS + EPSILON) {
        violated.push("minute");
        retryAfterMs = newTat - MINUTE_MS - now;
      }
    }
  }
  if (limits.perDay !== null && state.day + cost > limits.perDay) {
    violated.push("day");
    retryAfterMs = Math.max(retryAfterMs, horizon.msUntilNextDay);
  }
  if (limits.perMonth !== null && state.month + cost > limits.perMonth) {
    violated.push("month");
    retryAfterMs = Math.max(retryAfterMs, horizon.msUntilNextMonth);
  }
  const allowed = violated.length === 0;
  const next: CounterState = allowed
    ? { tat: newTat, day: state.day + cost, month: state.month + cost }
    : { tat: state.tat, day: state.day, month: state.month };
  const effectiveTat = Math.max(next.tat, now);
  return {
    allowed,
    violated,
    retryAfterMs,
    state: next,
    minuteRemaining: minuteRemaining(limits.perMinute, effectiveTat, now),
    minuteResetMs: effectiveTat - now,
  };
}
