import { sql } from "drizzle-orm";
import { type AuditActor, recordAudit, SYSTEM_ACTOR } from "../../platform/audit.ts";
import { billingMeterReports, customers } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import { calendar } from "../rate-limit/calendar.ts";
import { OVERAGE_TIERS, TIER_LIMITS, TIER_STREAM } from "../rate-limit/policy.ts";
import type { RateLimits } from "../rate-limit/rate-limits.ts";
import type { BillingCustomer, BillingRepo } from "./billing.repo.ts";
import type { SettingsPatch, SettingsView } from "./settings.schemas.ts";

/** The two overage meters, as named in billing_meter_reports and billing_usage_alerts. */
export const METERS = ["requests", "stream_seconds"] as const;
export type MeterName = (typeof METERS)[number];

export interface SettingsServiceDeps {
  readonly repo: BillingRepo;
  readonly limits: Pick<RateLimits, "customerChanged">;
  readonly now: () => number;
}

/** Who may turn overage on: an overage tier (pro) that Stripe knows, so the overage can be billed. */
function overageAvailable(c: BillingCustomer): boolean {
  return OVERAGE_TIERS.includes(c.tier) && c.stripeCustomerId !== null;
}

function view(c: BillingCustomer): SettingsView {
  return {
    overage: c.overageEnabled,
    monthly_overage_cap: c.overageCapRequests,
    stream_overage_cap_seconds: c.overageCapStreamSeconds,
    overage_available: overageAvailable(c),
    included: {
      requests: c.quotaPerMonth ?? TIER_LIMITS[c.tier].perMonth,
      stream_seconds: c.streamSecondsPerMonth ?? TIER_STREAM[c.tier].secondsPerMonth,
    },
  };
}

/** `GET/PATCH /v1/billing/settings`: the metered-overage opt-in and its caps. Framework-free. */
export class SettingsService {
  private readonly deps: SettingsServiceDeps;
  constructor(deps: SettingsServiceDeps) {
    this.deps = deps;
  }

  async get(customerId: string): Promise<SettingsView> {
    const c = await this.deps.repo.customer(customerId);
    if (c === undefined) throw errors.notFound("Customer");
    return view(c);
  }

  /** `actor` goes into the audit entry written with the change (same transaction). */
  async update(customerId: string, patch: SettingsPatch, actor: AuditActor = SYSTEM_ACTOR): Promise<SettingsView> {
    const { repo } = this.deps;
    const updated = await repo.db.transaction(async (tx) => {
      const c = await repo.customerForUpdate(tx, customerId);
      if (c === undefined) throw errors.notFound("Customer");
      const enabled = patch.overage ?? c.overageEnabled;
      const capRequests = patch.monthly_overage_cap ?? c.overageCapRequests;
      const capStream = patch.stream_overage_cap_seconds ?? c.overageCapStreamSeconds;
      const turningOn = enabled && !c.overageEnabled;
      if (turningOn && !overageAvailable(c)) {
        throw errors.overageNotAvailable(
          c.tier === "enterprise"
            ? "The enterprise plan has no monthly request quota, so there is no overage to opt in to."
            : OVERAGE_TIERS.includes(c.tier)
              ? "Subscribe through checkout first: overage is billed on the Stripe subscription."
              : `Metered overage needs the ${OVERAGE_TIERS.join(" or ")} plan; the ${c.tier} plan stops at its quota.`,
        );
      }
      if (enabled && capRequests === null) {
        throw errors.validation(
          [{ in: "body", path: "/monthly_overage_cap", message: "required to turn overage on" }],
          "Turning overage on needs a monthly_overage_cap: the most requests served beyond the included quota.",
        );
      }
      await tx
        .update(customers)
        .set({
          overageEnabled: enabled,
          overageCapRequests: capRequests,
          overageCapStreamSeconds: capStream,
          updatedAt: sql`now()`,
        })
        .where(sql`${customers.id} = ${customerId}`);
      if (enabled) {
        // Marks the period as one with overage: the reporter keeps reporting it even if overage is
        // turned off again before its next tick (billing.md, "Overage").
        const period = calendar(this.deps.now()).month;
        await tx
          .insert(billingMeterReports)
          .values(METERS.map((meter) => ({ customerId, period, meter })))
          .onConflictDoNothing();
      }
      // Non-secret settings: the audit entry keeps their old and new values.
      const changes: Record<string, { from: unknown; to: unknown }> = {};
      const compare = (field: string, from: unknown, to: unknown) => {
        if (from !== to) changes[field] = { from, to };
      };
      compare("overage", c.overageEnabled, enabled);
      compare("monthly_overage_cap", c.overageCapRequests, capRequests);
      compare("stream_overage_cap_seconds", c.overageCapStreamSeconds, capStream);
      await recordAudit(tx, {
        ...actor,
        action: "billing_settings.update",
        targetType: "customer",
        targetId: customerId,
        customerId,
        details: { fields: Object.keys(patch).sort(), changes },
      });
      return { ...c, overageEnabled: enabled, overageCapRequests: capRequests, overageCapStreamSeconds: capStream };
    });
    await this.deps.limits.customerChanged(customerId);
    return view(updated);
  }
}
