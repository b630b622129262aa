import { Counter, Gauge, type Registry } from "prom-client";
import type { WebSocket } from "ws";
import type { Tier } from "../../platform/auth.ts";
import type { DropReason } from "./session-stats.ts";

export type Endpoint = "stream" | "openpi";
export type FrameOutcome = "action" | DropReason | "error";

export interface StreamMetrics {
  readonly sessions: Gauge<"endpoint">;
  readonly frames: Counter<"endpoint" | "outcome">;
  readonly rejected: Counter<"endpoint" | "reason">;
}

export function createStreamMetrics(registry: Registry): StreamMetrics {
  return {
    sessions: new Gauge({
      name: "vla_stream_sessions_active",
      help: "Open authenticated stream sessions by endpoint (stream, openpi).",
      labelNames: ["endpoint"],
      registers: [registry],
    }),
    frames: new Counter({
      name: "vla_stream_frames_total",
      help: "Stream frames by endpoint and outcome (action, superseded, rate_limited, overloaded, error).",
      labelNames: ["endpoint", "outcome"],
      registers: [registry],
    }),
    rejected: new Counter({
      name: "vla_stream_connections_rejected_total",
      help: "Stream connections closed before a session began, by reason (auth, too_many_sessions, shutting_down).",
      labelNames: ["endpoint", "reason"],
      registers: [registry],
    }),
  };
}

/** What the registry needs from an open connection. */
export interface StreamConnection {
  readonly socket: WebSocket;
  /** Heartbeat: false after a ping until the pong arrives. */
  alive: boolean;
  /** Periodic `stats` push (native sessions only). */
  pushStats(): void;
  /** Graceful shutdown: finish what is in flight, say goodbye, close with 1001. */
  shutdown(): Promise<void>;
}

/**
 * Every open stream connection of this instance, and the authenticated sessions per customer
 * (the tier's session limit is enforced here, per instance).
 */
export class ConnectionRegistry {
  private readonly connections = new Set<StreamConnection>();
  private readonly perCustomer = new Map<string, number>();
  private readonly maxSessions: Readonly<Record<Tier, number>>;

  constructor(maxSessions: Readonly<Record<Tier, number>>) {
    this.maxSessions = maxSessions;
  }

  limitFor(tier: Tier): number {
    return this.maxSessions[tier];
  }

  add(connection: StreamConnection): void {
    this.connections.add(connection);
  }

  delete(connection: StreamConnection): void {
    this.connections.delete(connection);
  }

  /** Takes one session slot of the customer; false when the tier's limit is reached. */
  acquire(customerId: string, tier: Tier): boolean {
    const n = this.perCustomer.get(customerId) ?? 0;
    if (n >= this.limitFor(tier)) return false;
    this.perCustomer.set(customerId, n + 1);
    return true;
  }

  release(customerId: string): void {
    const n = (this.perCustomer.get(customerId) ?? 0) - 1;
    if (n <= 0) this.perCustomer.delete(customerId);
    else this.perCustomer.set(customerId, n);
  }

  sessionsOf(customerId: string): number {
    return this.perCustomer.get(customerId) ?? 0;
  }

  /** One heartbeat round: drop sockets that missed the previous ping, ping the rest. */
  heartbeat(): void {
    for (const c of this.connections) {
      if (!c.alive) {
        c.socket.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.socket.ping();
      } catch {
        // closing already
      }
    }
  }

  pushStats(): void {
    for (const c of this.connections) c.pushStats();
  }

  /** Closes every connection gracefully, then terminates what has not closed within `deadlineMs`. */
  async shutdown(deadlineMs: number): Promise<void> {
    const all = [...this.connections];
    const closed = all.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.socket.readyState === c.socket.CLOSED) resolve();
          else c.socket.once("close", () => resolve());
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([Promise.all([...all.map((c) => c.shutdown().catch(() => {})), ...closed]), deadline]);
    clearTimeout(timer);
    for (const c of all) if (c.socket.readyState !== c.socket.CLOSED) c.socket.terminate();
  }
}
