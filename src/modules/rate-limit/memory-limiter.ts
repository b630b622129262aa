import { decide } from "./decide.ts";
import type { Limiter, LimitRequest, LimitResult } from "./limiter.ts";
import type { Limits } from "./policy.ts";

interface Entry {
  tat: number;
  dayKey: string;
  day: number;
  monthKey: string;
  month: number;
  /** The durable count the month started from; the fallback shares only what is above it. */
  monthSeed: number;
}

/**
 * The in-process limiter: the only one without Redis, and the fallback while Redis is down or
 * slow. As a fallback it enforces limits divided by the instance count (`divisor`), since each
 * instance then counts alone; the month starts from the durable count so it never resets.
 * Synchronous, so every check is atomic.
 */
export class MemoryLimiter implements Limiter {
  private readonly entries = new Map<string, Entry>();
  private readonly divisor: number;

  constructor(divisor = 1) {
    this.divisor = Math.max(1, divisor);
  }

  check(req: LimitRequest): LimitResult | "needs-seed" {
    let e = this.entries.get(req.customerId);
    if (e === undefined || e.monthKey !== req.cal.month) {
      if (req.monthSeed === undefined) return "needs-seed";
      e = {
        tat: e?.tat ?? 0,
        dayKey: req.cal.day,
        day: 0,
        monthKey: req.cal.month,
        month: req.monthSeed,
        monthSeed: req.monthSeed,
      };
      this.entries.set(req.customerId, e);
    }
    if (e.dayKey !== req.cal.day) {
      e.dayKey = req.cal.day;
      e.day = 0;
    }
    const limits = this.scaled(req.limits, e.monthSeed);
    const d = decide(
      e,
      limits,
      req.now,
      {
        msUntilNextDay: req.cal.nextDayAt - req.now,
        msUntilNextMonth: req.cal.nextMonthAt - req.now,
      },
      req.cost,
    );
    if (d.allowed && req.cost > 0) {
      e.tat = d.state.tat;
      e.day = d.state.day;
      e.month = d.state.month;
    }
    return {
      allowed: d.allowed,
      violated: d.violated,
      retryAfterMs: d.retryAfterMs,
      minuteRemaining: d.minuteRemaining,
      minuteResetMs: d.minuteResetMs,
      day: e.day,
      month: e.month,
    };
  }

  /** Forgets every customer (tests; also after Redis returns, so a later fallback starts clean). */
  clear(): void {
    this.entries.clear();
  }

  private scaled(limits: Limits, monthSeed: number): Limits {
    const n = this.divisor;
    if (n === 1) return limits;
    const share = (l: number | null) => (l === null ? null : Math.floor(l / n));
    return {
      perMinute:
        limits.perMinute === null ? null : Math.max(limits.perMinute > 0 ? 1 : 0, share(limits.perMinute) ?? 0),
      perDay: share(limits.perDay),
      perMonth: limits.perMonth === null ? null : monthSeed + Math.floor(Math.max(0, limits.perMonth - monthSeed) / n),
    };
  }
}
