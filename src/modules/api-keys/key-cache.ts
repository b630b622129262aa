import type { Principal } from "../../platform/auth.ts";
import type { Suspension } from "../../platform/suspension.ts";
import { SwrCache } from "../../platform/swr-cache.ts";

/** A verified key as cached: the ready-made principal plus the times that end its validity. */
export interface CachedKey {
  readonly kind: "key";
  readonly principal: Principal;
  readonly customerId: string;
  readonly expiresAt: number | null;
  /** In the future while rotating; in the past once revoked. */
  readonly revokedAt: number | null;
  /** The customer's suspension when loaded; a suspend or unsuspend drops the entry on every instance. */
  readonly suspension: Suspension | null;
  /** Minute (ms) of the last recorded use, so a key is queued for last_used_at once a minute. */
  lastUsedMinute: number;
}

export interface MissingKey {
  readonly kind: "missing";
}

export type KeyCacheEntry = CachedKey | MissingKey;

export interface KeyCacheOptions {
  readonly freshMs: number;
  readonly staleMs: number;
  readonly negativeMs: number;
  readonly maxEntries?: number;
  readonly now: () => number;
  readonly load: (hash: string) => Promise<KeyCacheEntry>;
  readonly onRefreshError?: (e: unknown) => void;
}

/**
 * Verified keys by SHA-256, in process: fresh for `freshMs`, then served while one background
 * load refreshes them (so a warm key never waits on the database); unknown hashes are
 * remembered too (`negativeMs`). Expiry and scheduled revocation (rotation end) are checked on
 * every hit, so they need no invalidation; revocations, tier changes and suspensions arrive
 * through the invalidation bus.
 */
export class KeyCache {
  private readonly cache: SwrCache<KeyCacheEntry>;

  constructor(opts: KeyCacheOptions) {
    this.cache = new SwrCache<KeyCacheEntry>({
      freshMs: opts.freshMs,
      staleMs: opts.staleMs,
      maxEntries: opts.maxEntries ?? 100_000,
      now: opts.now,
      load: opts.load,
      freshFor: (v) => (v.kind === "missing" ? opts.negativeMs : opts.freshMs),
      ...(opts.onRefreshError === undefined ? {} : { onRefreshError: opts.onRefreshError }),
    });
  }

  get(hash: string): KeyCacheEntry | Promise<KeyCacheEntry> {
    return this.cache.get(hash);
  }

  /** The entry when cached and usable; never reads the database. */
  peek(hash: string): KeyCacheEntry | undefined {
    return this.cache.peek(hash);
  }

  invalidateHash(hash: string): void {
    this.cache.delete(hash);
  }

  invalidateCustomer(customerId: string): void {
    this.cache.deleteWhere((v) => v.kind === "key" && v.customerId === customerId);
  }

  clear(): void {
    this.cache.clear();
  }

  get size(): number {
    return this.cache.size;
  }
}
