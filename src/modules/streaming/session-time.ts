import {
  type StreamTimeResult,
  streamExhausted,
  streamLeftMs,
  streamLimitMs,
  streamRemainingMs,
  streamRetryAfterMs,
  streamUsedMs,
} from "../rate-limit/stream-time.ts";

/** What a session needs of the stream-time meter. */
export interface StreamTimeCharger {
  charge(customerId: string, ms: number): Promise<StreamTimeResult>;
}

const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));

/** The `stream_time` member of `stats` and `stopped` messages (whole seconds; null: unlimited). */
export interface StreamTimeSnapshot {
  readonly session_s: number;
  readonly day: { readonly used_s: number; readonly limit_s: number | null; readonly remaining_s: number | null };
  readonly month: { readonly used_s: number; readonly limit_s: number | null; readonly remaining_s: number | null };
}

export function streamTimeSnapshot(r: StreamTimeResult, sessionMs: number): StreamTimeSnapshot {
  const w = (name: "stream_day" | "stream_month") => ({
    used_s: Math.floor(streamUsedMs(r, name) / 1000),
    limit_s: seconds(streamLimitMs(r, name)),
    remaining_s: seconds(streamRemainingMs(r, name)),
  });
  return { session_s: Math.floor(sessionMs / 1000), day: w("stream_day"), month: w("stream_month") };
}

/**
 * One session's running charge: each `charge()` adds the wall time since the previous one to the
 * customer's stream time (the registry calls it every heartbeat, the connection once more when
 * the session ends). Framework-free; `now` is the platform clock.
 */
export class SessionTime {
  private readonly meter: StreamTimeCharger;
  private readonly customerId: string;
  private readonly now: () => number;
  private lastAt: number;
  private sessionMs = 0;
  private ended = false;
  /** The customer's stream time after the latest charge. */
  last: StreamTimeResult;

  constructor(meter: StreamTimeCharger, customerId: string, now: () => number, admitted: StreamTimeResult) {
    this.meter = meter;
    this.customerId = customerId;
    this.now = now;
    this.lastAt = now();
    this.last = admitted;
  }

  /** Charges the time since the last charge; answers the customer's totals after it. */
  async charge(): Promise<StreamTimeResult> {
    if (this.ended) return this.last;
    const t = this.now();
    const ms = Math.max(0, t - this.lastAt);
    this.lastAt = t;
    this.sessionMs += ms;
    this.last = await this.meter.charge(this.customerId, ms);
    return this.last;
  }

  /** The final charge; later calls charge nothing. */
  async end(): Promise<StreamTimeResult> {
    const r = await this.charge();
    this.ended = true;
    return r;
  }

  /** The windows with no time left after the latest charge. */
  exhausted(): readonly string[] {
    return streamExhausted(this.last);
  }

  /** ms left before a window runs out (after the latest charge); null: unlimited. */
  leftMs(): number | null {
    return streamLeftMs(this.last);
  }

  retryAfterMs(): number {
    return streamRetryAfterMs(this.last);
  }

  snapshot(): StreamTimeSnapshot {
    return streamTimeSnapshot(this.last, this.sessionMs + Math.max(0, this.ended ? 0 : this.now() - this.lastAt));
  }
}
