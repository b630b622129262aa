import { type AuditActor, recordAudit } from "../../platform/audit.ts";
import type { Tier } from "../../platform/auth.ts";
import type { CustomerRow } from "../../platform/db/schema/index.ts";
import { effectiveLimits, TIER_LIMITS } from "../rate-limit/policy.ts";
import type { AdminCustomersRepo } from "./customers.repo.ts";

export interface LimitsPatch {
  readonly rate_limit_per_minute?: number | null;
  readonly quota_per_day?: number | null;
  readonly quota_per_month?: number | null;
}

/** A customer's request limits: the tier's defaults, its overrides (null: none) and what applies. */
export function limitsView(row: CustomerRow) {
  const tier = TIER_LIMITS[row.tier];
  const eff = effectiveLimits(row.tier, row);
  return {
    tier_defaults: {
      rate_limit_per_minute: tier.perMinute,
      quota_per_day: tier.perDay,
      quota_per_month: tier.perMonth,
    },
    overrides: {
      rate_limit_per_minute: row.rateLimitPerMinute,
      quota_per_day: row.quotaPerDay,
      quota_per_month: row.quotaPerMonth,
    },
    effective: {
      rate_limit_per_minute: eff.perMinute,
      quota_per_day: eff.perDay,
      quota_per_month: row.quotaPerMonth ?? tier.perMonth,
      overage_cap_requests: eff.overage?.cap ?? null,
    },
  };
}

export interface AdminCustomersServiceOptions {
  readonly repo: AdminCustomersRepo;
  /** Tells every instance to reload the customer's limits and cached keys (platform.limits.customerChanged). */
  readonly customerChanged: (customerId: string) => Promise<void>;
}

export type ChangeResult = { readonly before: CustomerRow; readonly after: CustomerRow } | undefined;

/**
 * Operator changes of a customer's tier and limit overrides, shared by the HTTP routes and the
 * CLI: each change and its audit entry commit together, then every instance drops the
 * customer's cached limits through the invalidation bus (the path billing's tier changes take).
 */
export class AdminCustomersService {
  private readonly o: AdminCustomersServiceOptions;
  constructor(o: AdminCustomersServiceOptions) {
    this.o = o;
  }

  async changeTier(
    actor: AuditActor,
    customerId: string,
    tier: Tier,
    reason: string,
    source: string,
  ): Promise<ChangeResult> {
    const result = await this.o.repo.update(customerId, { tier }, (tx, before) =>
      recordAudit(tx, {
        ...actor,
        action: "customer.tier_change",
        targetType: "customer",
        targetId: customerId,
        customerId,
        details: { from: before.tier, to: tier, reason, source },
      }),
    );
    if (result !== undefined) await this.o.customerChanged(customerId);
    return result;
  }

  async setLimits(actor: AuditActor, customerId: string, patch: LimitsPatch, source: string): Promise<ChangeResult> {
    const set: Partial<Pick<CustomerRow, "rateLimitPerMinute" | "quotaPerDay" | "quotaPerMonth">> = {};
    if (patch.rate_limit_per_minute !== undefined) set.rateLimitPerMinute = patch.rate_limit_per_minute;
    if (patch.quota_per_day !== undefined) set.quotaPerDay = patch.quota_per_day;
    if (patch.quota_per_month !== undefined) set.quotaPerMonth = patch.quota_per_month;
    const result = await this.o.repo.update(customerId, set, (tx, before, after) =>
      recordAudit(tx, {
        ...actor,
        action: "customer.limits_change",
        targetType: "customer",
        targetId: customerId,
        customerId,
        details: {
          fields: Object.keys(patch).sort(),
          from: limitsView(before).overrides,
          to: limitsView(after).overrides,
          source,
        },
      }),
    );
    if (result !== undefined) await this.o.customerChanged(customerId);
    return result;
  }
}
