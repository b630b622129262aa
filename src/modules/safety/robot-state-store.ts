import type { RedisHandle } from "../../platform/redis.ts";

/**
 * The last action sent to each robot, so the acceleration rule can compare against it.
 * Kept for `periods` control periods (default 3): an older previous action says nothing about the
 * robot's current velocity and is not used. Keys are (customer, robot): robots are tenant-scoped.
 */
export interface RobotStateStore {
  /** The previous action if one was stored less than `periods` control periods ago. */
  get(customerId: string, robotId: string, controlHz: number): Promise<readonly number[] | undefined>;
  /** The stored action with its time (ms), whatever its age: callers that learn control_hz later check validity. */
  getEntry(customerId: string, robotId: string): Promise<StoredAction | undefined>;
  set(customerId: string, robotId: string, action: readonly number[], controlHz: number): Promise<void>;
  delete(customerId: string, robotId: string): Promise<void>;
}

export interface StateStoreOptions {
  /** Control periods a previous action stays valid (default 3). */
  readonly periods?: number;
  /** Bound of the in-process map (least recently used first out; default 100 000). */
  readonly maxEntries?: number;
  /** Clock in ms (tests inject one). */
  readonly now?: () => number;
}

export interface StoredAction {
  readonly action: readonly number[];
  readonly at: number;
}
type Entry = StoredAction;

export const DEFAULT_PERIODS = 3;

export function validityMs(controlHz: number, periods: number): number {
  return (periods * 1000) / controlHz;
}

const memKey = (customerId: string, robotId: string) => `${customerId}\u0000${robotId}`;

/** In-process LRU (a Map keeps insertion order: re-inserting on access moves an entry to the end). */
export class MemoryRobotStateStore implements RobotStateStore {
  private readonly map = new Map<string, Entry>();
  private readonly periods: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: StateStoreOptions = {}) {
    this.periods = options.periods ?? DEFAULT_PERIODS;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.map.size;
  }

  async get(customerId: string, robotId: string, controlHz: number): Promise<readonly number[] | undefined> {
    return this.getSync(customerId, robotId, controlHz);
  }

  async getEntry(customerId: string, robotId: string): Promise<StoredAction | undefined> {
    return this.map.get(memKey(customerId, robotId));
  }

  getSync(customerId: string, robotId: string, controlHz: number): readonly number[] | undefined {
    const k = memKey(customerId, robotId);
    const e = this.map.get(k);
    if (e === undefined) return undefined;
    if (this.now() - e.at >= validityMs(controlHz, this.periods)) {
      this.map.delete(k);
      return undefined;
    }
    this.map.delete(k);
    this.map.set(k, e);
    return e.action;
  }

  async set(customerId: string, robotId: string, action: readonly number[], _controlHz: number): Promise<void> {
    this.setSync(customerId, robotId, action);
  }

  setSync(customerId: string, robotId: string, action: readonly number[], at = this.now()): void {
    const k = memKey(customerId, robotId);
    this.map.delete(k);
    this.map.set(k, { action: action.slice(), at });
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.map.delete(oldest.value);
    }
  }

  async delete(customerId: string, robotId: string): Promise<void> {
    this.map.delete(memKey(customerId, robotId));
  }
}

/**
 * Redis-backed store shared by all instances: key `{prefix}safety:prev:{customerId}:{robotId}`
 * (the hash tag keeps a customer's keys in one cluster slot), value `{"a":[...],"t":ms}`, PX TTL of
 * the validity window. Writes go to the in-process store too; when Redis is absent, down or fails,
 * reads and writes use the in-process store alone.
 */
export class RedisRobotStateStore implements RobotStateStore {
  private readonly redis: RedisHandle;
  private readonly local: MemoryRobotStateStore;
  private readonly periods: number;
  private readonly now: () => number;

  constructor(redis: RedisHandle, options: StateStoreOptions = {}) {
    this.redis = redis;
    this.local = new MemoryRobotStateStore(options);
    this.periods = options.periods ?? DEFAULT_PERIODS;
    this.now = options.now ?? Date.now;
  }

  key(customerId: string, robotId: string): string {
    return `${this.redis.keyPrefix}safety:prev:{${customerId}}:${robotId}`;
  }

  private client() {
    const c = this.redis.client;
    return c !== null && c.status === "ready" ? c : null;
  }

  async get(customerId: string, robotId: string, controlHz: number): Promise<readonly number[] | undefined> {
    const e = await this.getEntry(customerId, robotId);
    if (e === undefined || this.now() - e.at >= validityMs(controlHz, this.periods)) return undefined;
    return e.action;
  }

  async getEntry(customerId: string, robotId: string): Promise<StoredAction | undefined> {
    const c = this.client();
    if (c === null) return this.local.getEntry(customerId, robotId);
    try {
      const raw = await c.get(this.key(customerId, robotId));
      if (raw === null) return undefined;
      const e = JSON.parse(raw) as { a?: unknown; t?: unknown };
      if (!Array.isArray(e.a) || typeof e.t !== "number") return undefined;
      return { action: e.a as number[], at: e.t };
    } catch {
      return this.local.getEntry(customerId, robotId);
    }
  }

  async set(customerId: string, robotId: string, action: readonly number[], controlHz: number): Promise<void> {
    const at = this.now();
    this.local.setSync(customerId, robotId, action, at);
    const c = this.client();
    if (c === null) return;
    const ttl = Math.max(1, Math.ceil(validityMs(controlHz, this.periods)));
    try {
      await c.set(this.key(customerId, robotId), JSON.stringify({ a: action, t: at }), "PX", ttl);
    } catch {
      // the in-process copy serves this instance until Redis is back
    }
  }

  async delete(customerId: string, robotId: string): Promise<void> {
    await this.local.delete(customerId, robotId);
    const c = this.client();
    if (c === null) return;
    try {
      await c.del(this.key(customerId, robotId));
    } catch {
      // nothing more to do
    }
  }
}

/** The Redis store when Redis is configured, else the in-process one. */
export function createRobotStateStore(
  redis: RedisHandle | undefined,
  options: StateStoreOptions = {},
): RobotStateStore {
  return redis?.client != null ? new RedisRobotStateStore(redis, options) : new MemoryRobotStateStore(options);
}
