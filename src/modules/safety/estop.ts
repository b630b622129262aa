import { type RedisHandle, scanTargets } from "../../platform/redis.ts";

/** Why and when a robot was stopped. */
export interface EstopRecord {
  readonly at: string;
  readonly reason: string;
  readonly inferenceId?: string | undefined;
}

/**
 * Emergency stops per (customer, robot). A stopped robot's requests are refused (409 `robot_stopped`)
 * until its owner clears the stop (`POST /v1/robots/{robot_id}/clear-stop`). Stops never expire.
 */
export interface EstopRegistry {
  stop(customerId: string, robotId: string, record: EstopRecord): Promise<void>;
  /** The stop record, or undefined when the robot is not stopped. */
  check(customerId: string, robotId: string): Promise<EstopRecord | undefined>;
  /** True when a stop was cleared. */
  clear(customerId: string, robotId: string): Promise<boolean>;
  /** The customer's stopped robots. */
  list(customerId: string): Promise<ReadonlyMap<string, EstopRecord>>;
  /** Every customer's stopped robots (operators: `GET /admin/safety/stops`), at most `max`. */
  listAll(max: number): Promise<StoppedRobot[]>;
}

export interface StoppedRobot {
  readonly customerId: string;
  readonly robotId: string;
  readonly record: EstopRecord;
}

/**
 * In-process registry. Deliberately unbounded: evicting a stop would silently release a robot;
 * one entry per stopped robot is small.
 */
export class MemoryEstopRegistry implements EstopRegistry {
  private readonly byCustomer = new Map<string, Map<string, EstopRecord>>();

  async stop(customerId: string, robotId: string, record: EstopRecord): Promise<void> {
    this.stopSync(customerId, robotId, record);
  }
  stopSync(customerId: string, robotId: string, record: EstopRecord): void {
    let m = this.byCustomer.get(customerId);
    if (m === undefined) {
      m = new Map();
      this.byCustomer.set(customerId, m);
    }
    if (!m.has(robotId)) m.set(robotId, record); // the first stop's reason is kept
  }
  async check(customerId: string, robotId: string): Promise<EstopRecord | undefined> {
    return this.checkSync(customerId, robotId);
  }
  checkSync(customerId: string, robotId: string): EstopRecord | undefined {
    return this.byCustomer.get(customerId)?.get(robotId);
  }
  async clear(customerId: string, robotId: string): Promise<boolean> {
    return this.clearSync(customerId, robotId);
  }
  clearSync(customerId: string, robotId: string): boolean {
    const m = this.byCustomer.get(customerId);
    if (m === undefined) return false;
    const had = m.delete(robotId);
    if (m.size === 0) this.byCustomer.delete(customerId);
    return had;
  }
  async list(customerId: string): Promise<ReadonlyMap<string, EstopRecord>> {
    return new Map(this.byCustomer.get(customerId) ?? []);
  }
  async listAll(max: number): Promise<StoppedRobot[]> {
    const out: StoppedRobot[] = [];
    for (const [customerId, m] of this.byCustomer) {
      for (const [robotId, record] of m) {
        if (out.length >= max) return out;
        out.push({ customerId, robotId, record });
      }
    }
    return out;
  }
}

/**
 * Redis registry shared by all instances: one hash per customer, `{prefix}safety:estop:{customerId}`,
 * field = robot id, value = JSON record, no TTL. Every stop is also kept in process, so a Redis outage
 * never releases a robot this instance stopped; while Redis is reachable it is authoritative
 * (a clear on another instance is honoured here).
 */
export class RedisEstopRegistry implements EstopRegistry {
  private readonly redis: RedisHandle;
  private readonly local = new MemoryEstopRegistry();

  constructor(redis: RedisHandle) {
    this.redis = redis;
  }

  key(customerId: string): string {
    return `${this.redis.keyPrefix}safety:estop:{${customerId}}`;
  }

  private client() {
    const c = this.redis.client;
    return c !== null && c.status === "ready" ? c : null;
  }

  async stop(customerId: string, robotId: string, record: EstopRecord): Promise<void> {
    this.local.stopSync(customerId, robotId, record);
    const c = this.client();
    if (c === null) return;
    try {
      await c.hsetnx(this.key(customerId), robotId, JSON.stringify(record));
    } catch {
      // kept in process
    }
  }

  async check(customerId: string, robotId: string): Promise<EstopRecord | undefined> {
    const c = this.client();
    if (c === null) return this.local.checkSync(customerId, robotId);
    try {
      const raw = await c.hget(this.key(customerId), robotId);
      if (raw === null) {
        this.local.clearSync(customerId, robotId);
        return undefined;
      }
      const rec = parseRecord(raw);
      this.local.stopSync(customerId, robotId, rec);
      return rec;
    } catch {
      return this.local.checkSync(customerId, robotId);
    }
  }

  async clear(customerId: string, robotId: string): Promise<boolean> {
    const hadLocal = this.local.clearSync(customerId, robotId);
    const c = this.client();
    if (c === null) return hadLocal;
    try {
      return (await c.hdel(this.key(customerId), robotId)) > 0 || hadLocal;
    } catch {
      return hadLocal;
    }
  }

  async list(customerId: string): Promise<ReadonlyMap<string, EstopRecord>> {
    const c = this.client();
    if (c === null) return this.local.list(customerId);
    try {
      const all = await c.hgetall(this.key(customerId));
      return new Map(Object.entries(all).map(([robot, raw]) => [robot, parseRecord(raw)]));
    } catch {
      return this.local.list(customerId);
    }
  }

  /** SCANs the per-customer hashes (never KEYS; every master of a cluster); in process only while Redis is away. */
  async listAll(max: number): Promise<StoppedRobot[]> {
    const c = this.client();
    if (c === null) return this.local.listAll(max);
    try {
      const out: StoppedRobot[] = [];
      // A cluster's keys are spread over its masters: each one is scanned (one node on a single Redis).
      for (const node of scanTargets(c)) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(
            cursor,
            "MATCH",
            `${this.redis.keyPrefix}safety:estop:{*}`,
            "COUNT",
            500,
          );
          cursor = next;
          for (const key of keys) {
            const customerId = CUSTOMER_IN_KEY.exec(key)?.[1];
            if (customerId === undefined) continue;
            const all = await c.hgetall(key);
            for (const [robotId, raw] of Object.entries(all)) {
              if (out.length >= max) return out;
              out.push({ customerId, robotId, record: parseRecord(raw) });
            }
          }
        } while (cursor !== "0");
      }
      return out;
    } catch {
      return this.local.listAll(max);
    }
  }
}

const CUSTOMER_IN_KEY = /safety:estop:\{([^}]+)\}$/;

function parseRecord(raw: string): EstopRecord {
  try {
    const o = JSON.parse(raw) as Partial<EstopRecord>;
    return { at: String(o.at ?? ""), reason: String(o.reason ?? "unknown"), inferenceId: o.inferenceId };
  } catch {
    return { at: "", reason: "unreadable stop record" };
  }
}

export function createEstopRegistry(redis: RedisHandle | undefined): EstopRegistry {
  return redis?.client != null ? new RedisEstopRegistry(redis) : new MemoryEstopRegistry();
}
