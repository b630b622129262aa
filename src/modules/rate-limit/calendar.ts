/** UTC calendar windows for the day and month quotas. */
export interface CalendarWindows {
  /** e.g. "20261126"; names the day counter. */
  readonly day: string;
  /** e.g. "2026-11-01"; names the month counter and the usage_counters row. */
  readonly month: string;
  readonly dayStartAt: number;
  readonly nextDayAt: number;
  readonly nextMonthAt: number;
}

const pad = (n: number) => String(n).padStart(2, "0");

let last: CalendarWindows | undefined;

/** The day and month `now` falls in; memoised, since every request of a day shares the answer. */
export function calendar(now: number): CalendarWindows {
  if (last !== undefined && now >= last.dayStartAt && now < last.nextDayAt) return last;
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  last = {
    day: `${y}${pad(m + 1)}${pad(day)}`,
    month: `${y}-${pad(m + 1)}-01`,
    dayStartAt: Date.UTC(y, m, day),
    nextDayAt: Date.UTC(y, m, day + 1),
    nextMonthAt: Date.UTC(y, m + 1, 1),
  };
  return last;
}
