/**
 * An in-process cache that serves an entry fresh for `freshMs`, then serves it stale (while one
 * background load refreshes it) up to `staleMs`, then loads in the foreground. Loads are
 * single-flight per key. Any invalidation bumps an epoch so a load that started before it
 * cannot write an outdated value back. Bounded: the oldest entries go first.
 */
export interface SwrCacheOptions<V> {
  readonly freshMs: number;
  readonly staleMs: number;
  readonly maxEntries: number;
  readonly now: () => number;
  readonly load: (key: string) => Promise<V>;
  /** Per-value freshness (e.g. shorter for negative entries); defaults to freshMs. */
  readonly freshFor?: (value: V) => number;
  readonly onRefreshError?: (error: unknown) => void;
}

interface Slot<V> {
  value: V;
  at: number;
}

export class SwrCache<V> {
  private readonly slots = new Map<string, Slot<V>>();
  private readonly inflight = new Map<string, Promise<V>>();
  private readonly opts: SwrCacheOptions<V>;
  private epoch = 0;

  constructor(opts: SwrCacheOptions<V>) {
    this.opts = opts;
  }

  /** The cached value when usable (synchronously), otherwise a promise of the loaded one. */
  get(key: string): V | Promise<V> {
    const slot = this.usable(key);
    return slot === undefined ? this.load(key) : slot.value;
  }

  /**
   * The cached value when usable, as `get` would serve it (a stale one starts its background
   * refresh), or undefined: never loads in the foreground.
   */
  peek(key: string): V | undefined {
    return this.usable(key)?.value;
  }

  /** The slot if it may be served: fresh, or stale within staleMs (then refreshed in the background). */
  private usable(key: string): Slot<V> | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) return undefined;
    const age = this.opts.now() - slot.at;
    const fresh = this.opts.freshFor?.(slot.value) ?? this.opts.freshMs;
    if (age <= fresh) return slot;
    if (age > Math.max(fresh, this.opts.staleMs)) return undefined;
    this.load(key).catch((e: unknown) => this.opts.onRefreshError?.(e));
    return slot;
  }

  set(key: string, value: V): void {
    this.slots.delete(key);
    this.slots.set(key, { value, at: this.opts.now() });
    if (this.slots.size > this.opts.maxEntries) {
      const oldest = this.slots.keys().next();
      if (oldest.done !== true) this.slots.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.epoch++;
    this.slots.delete(key);
  }

  deleteWhere(predicate: (value: V) => boolean): void {
    this.epoch++;
    for (const [k, slot] of this.slots) if (predicate(slot.value)) this.slots.delete(k);
  }

  clear(): void {
    this.epoch++;
    this.slots.clear();
  }

  get size(): number {
    return this.slots.size;
  }

  private load(key: string): Promise<V> {
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const epoch = this.epoch;
    const p = this.opts
      .load(key)
      .then((value) => {
        if (epoch === this.epoch) this.set(key, value);
        return value;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}
