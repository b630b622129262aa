import { randomUUID } from "node:crypto";
import { Counter, Gauge, type Registry } from "prom-client";
import type { WebSocket } from "ws";
import type { Tier } from "../../platform/auth.ts";
import type { AppError } from "../../platform/errors.ts";
import { pipelineGroup, type RedisHandle } from "../../platform/redis.ts";
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
      help: "Stream frames by endpoint and outcome (action, superseded, rate_ceiling, overloaded, error).",
      labelNames: ["endpoint", "outcome"],
      registers: [registry],
    }),
    rejected: new Counter({
      name: "vla_stream_connections_rejected_total",
      help: "Stream connections refused before a session began, by reason (auth, too_many_sessions, shutting_down, robot_mismatch, model).",
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
  /** Charges the session time elapsed since the last charge; closes the session when the allowance is used up. */
  chargeTime(): Promise<void>;
  /** The authenticated customer; undefined before authentication. */
  customerId(): string | undefined;
  /** The customer was suspended: say why, close 4403 at once (a frame in flight is not waited for). */
  revoke(e: AppError): void;
}

/**
 * Takes a slot, or refuses when the customer already holds `limit`: KEYS[1] is the customer's
 * sorted set (member = slot id, score = expiry in ms). Expired members (an instance that died
 * without releasing) are dropped first, so a crash frees its slots within one TTL.
 */
const ACQUIRE_LUA = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/**
 * Every open stream connection of this instance, and the authenticated sessions per customer.
 * With Redis the tier's session limit holds across all instances: each session holds a member
 * of `{prefix}stream:sessions:{customerId}` (a sorted set scored by expiry), refreshed every
 * heartbeat and removed on close; a crashed instance's slots expire after three heartbeats.
 * Without Redis (or while it is unreachable) the limit is counted per instance.
 */
export class ConnectionRegistry {
  private readonly connections = new Set<StreamConnection>();
  /** Slots held by this instance: customer -> slot ids. */
  private readonly held = new Map<string, Set<string>>();
  private readonly maxSessions: Readonly<Record<Tier, number>>;
  private readonly redis: RedisHandle | undefined;
  private readonly slotTtlMs: number;
  private readonly now: () => number;

  constructor(
    maxSessions: Readonly<Record<Tier, number>>,
    shared: {
      readonly redis?: RedisHandle | undefined;
      readonly heartbeatMs?: number;
      readonly now?: () => number;
    } = {},
  ) {
    this.maxSessions = maxSessions;
    this.redis = shared.redis;
    this.slotTtlMs = 3 * (shared.heartbeatMs ?? 30_000);
    this.now = shared.now ?? Date.now;
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

  private key(customerId: string): string {
    return `${this.redis?.keyPrefix ?? ""}stream:sessions:{${customerId}}`;
  }

  private client() {
    const c = this.redis?.client ?? null;
    return c !== null && c.status === "ready" ? c : null;
  }

  /** Takes one session slot of the customer; undefined when the tier's limit is reached, else the slot id. */
  async acquire(customerId: string, tier: Tier): Promise<string | undefined> {
    const limit = this.limitFor(tier);
    const mine = this.held.get(customerId) ?? new Set<string>();
    if (mine.size >= limit) return undefined;
    // Reserved locally before Redis answers, so concurrent acquires of one customer count each other.
    const slot = randomUUID();
    mine.add(slot);
    this.held.set(customerId, mine);
    const c = this.client();
    if (c !== null) {
      let ok: unknown = 1;
      try {
        ok = await c.eval(ACQUIRE_LUA, 1, this.key(customerId), this.now(), this.slotTtlMs, limit, slot);
      } catch {
        // Redis trouble: this instance's own count decides (checked above).
      }
      if (ok !== 1) {
        this.forget(customerId, slot);
        return undefined;
      }
    }
    return slot;
  }

  private forget(customerId: string, slot: string): boolean {
    const mine = this.held.get(customerId);
    if (mine === undefined || !mine.delete(slot)) return false;
    if (mine.size === 0) this.held.delete(customerId);
    return true;
  }

  release(customerId: string, slot: string): void {
    if (!this.forget(customerId, slot)) return;
    void this.client()
      ?.zrem(this.key(customerId), slot)
      .catch(() => {});
  }

  sessionsOf(customerId: string): number {
    return this.held.get(customerId)?.size ?? 0;
  }

  /** Pushes the expiry of every slot this instance holds (called with the heartbeat). */
  refreshSlots(): void {
    const c = this.client();
    if (c === null || this.held.size === 0) return;
    const expiry = this.now() + this.slotTtlMs;
    // One pipeline per node: on a Redis Cluster a pipeline's keys must all live on one node.
    const pipelines = new Map<string, ReturnType<typeof c.pipeline>>();
    for (const [customerId, slots] of this.held) {
      const key = this.key(customerId);
      const node = pipelineGroup(c, key);
      let p = pipelines.get(node);
      if (p === undefined) {
        p = c.pipeline();
        pipelines.set(node, p);
      }
      for (const slot of slots) p.zadd(key, "XX", expiry, slot);
      p.pexpire(key, this.slotTtlMs);
    }
    for (const p of pipelines.values()) void p.exec().catch(() => {});
  }

  /** One heartbeat round: drop sockets that missed the previous ping, ping the rest, refresh slots. */
  heartbeat(): void {
    this.refreshSlots();
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

  /** True when this instance has an authenticated connection of the customer. */
  hasCustomer(customerId: string): boolean {
    for (const c of this.connections) if (c.customerId() === customerId) return true;
    return false;
  }

  /** Closes every authenticated connection of the customer with `e` (suspension); returns how many. */
  revokeCustomer(customerId: string, e: AppError): number {
    let n = 0;
    for (const c of [...this.connections]) {
      if (c.customerId() !== customerId) continue;
      c.revoke(e);
      n++;
    }
    return n;
  }

  /** Every session charges its elapsed time (called with the heartbeat; tests call it directly). */
  async chargeTime(): Promise<void> {
    await Promise.all([...this.connections].map((c) => c.chargeTime().catch(() => {})));
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
