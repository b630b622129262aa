import type { Tier } from "../../platform/auth.ts";
import { SwrCache } from "../../platform/swr-cache.ts";
import { effectiveLimits, type LimitOverrides, type Limits } from "./policy.ts";

export interface CustomerLimits {
  readonly tier: Tier;
  readonly limits: Limits;
}

export interface CustomerLimitsOptions {
  readonly freshMs: number;
  readonly staleMs: number;
  readonly now: () => number;
  readonly load: (customerId: string) => Promise<{ tier: Tier } & LimitOverrides>;
}

/**
 * Each customer's effective limits, cached in process. API-key verification primes it from
 * the same query that loads the key, so the limiter never asks the database on the hot path;
 * tier and override changes invalidate it through the invalidation bus.
 */
export class CustomerLimitsCache {
  private readonly cache: SwrCache<CustomerLimits>;

  constructor(opts: CustomerLimitsOptions) {
    this.cache = new SwrCache<CustomerLimits>({
      freshMs: opts.freshMs,
      staleMs: opts.staleMs,
      maxEntries: 100_000,
      now: opts.now,
      load: async (id) => {
        const row = await opts.load(id);
        return { tier: row.tier, limits: effectiveLimits(row.tier, row) };
      },
    });
  }

  get(customerId: string): CustomerLimits | Promise<CustomerLimits> {
    return this.cache.get(customerId);
  }

  prime(customerId: string, tier: Tier, overrides: LimitOverrides): void {
    this.cache.set(customerId, { tier, limits: effectiveLimits(tier, overrides) });
  }

  invalidate(customerId: string): void {
    this.cache.delete(customerId);
  }

  clear(): void {
    this.cache.clear();
  }
}
