/**
 * What the background jobs last did, for `GET /admin/monitoring/health`: each job registers once
 * with its interval and reports every run through `run()`. In process only (each instance reports
 * its own timers); nothing here schedules anything.
 */

export interface JobState {
  readonly name: string;
  readonly interval_ms: number;
  /** Start of the last run that finished (ISO), null before the first. */
  readonly last_run_at: string | null;
  readonly last_duration_ms: number | null;
  /** ok or failed; null before the first run. */
  readonly last_outcome: "ok" | "failed" | null;
  /** The last failure's message and when it happened (kept after later successes). */
  readonly last_error: string | null;
  readonly last_error_at: string | null;
  /** When the timer fires next (last start, or registration, plus the interval). */
  readonly next_run_at: string;
  readonly running: boolean;
  readonly runs: number;
  readonly failures: number;
}

export interface JobHandle {
  /** Runs `fn` as one run of the job, recording start, duration and outcome; rethrows its error. */
  run<T>(fn: () => Promise<T>): Promise<T>;
  /** Records a failure the job caught itself (it logs and retries later). */
  failed(err: unknown): void;
}

interface Entry {
  intervalMs: number;
  registeredAt: number;
  lastStart: number | null;
  lastRunAt: number | null;
  lastDurationMs: number | null;
  lastOutcome: "ok" | "failed" | null;
  lastError: string | null;
  lastErrorAt: number | null;
  running: number;
  runs: number;
  failures: number;
}

export class JobRegistry {
  private readonly jobs = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Registers (or re-registers, keeping the history) a job that runs every `intervalMs`. */
  register(name: string, intervalMs: number): JobHandle {
    let e = this.jobs.get(name);
    if (e === undefined) {
      e = {
        intervalMs,
        registeredAt: this.now(),
        lastStart: null,
        lastRunAt: null,
        lastDurationMs: null,
        lastOutcome: null,
        lastError: null,
        lastErrorAt: null,
        running: 0,
        runs: 0,
        failures: 0,
      };
      this.jobs.set(name, e);
    }
    e.intervalMs = intervalMs;
    const entry = e;
    const fail = (err: unknown) => {
      entry.lastOutcome = "failed";
      entry.lastError = (err instanceof Error ? err.message : String(err)).slice(0, 500);
      entry.lastErrorAt = this.now();
      entry.failures += 1;
    };
    return {
      run: async <T>(fn: () => Promise<T>): Promise<T> => {
        const started = this.now();
        const t0 = performance.now();
        entry.lastStart = started;
        entry.running += 1;
        try {
          const out = await fn();
          entry.lastOutcome = "ok";
          return out;
        } catch (err) {
          fail(err);
          throw err;
        } finally {
          entry.running -= 1;
          entry.runs += 1;
          entry.lastRunAt = started;
          entry.lastDurationMs = Math.round((performance.now() - t0) * 100) / 100;
        }
      },
      failed: fail,
    };
  }

  list(): JobState[] {
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return [...this.jobs.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, e]) => ({
        name,
        interval_ms: e.intervalMs,
        last_run_at: iso(e.lastRunAt),
        last_duration_ms: e.lastDurationMs,
        last_outcome: e.lastOutcome,
        last_error: e.lastError,
        last_error_at: iso(e.lastErrorAt),
        next_run_at: new Date((e.lastStart ?? e.registeredAt) + e.intervalMs).toISOString(),
        running: e.running > 0,
        runs: e.runs,
        failures: e.failures,
      }));
  }
}
