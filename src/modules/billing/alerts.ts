import { and, eq, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { billingUsageAlerts, customers, usageCounters } from "../../platform/db/schema/index.ts";
import type { EmailMessage } from "../../platform/email.ts";
import { calendar } from "../rate-limit/calendar.ts";
import { OVERAGE_TIERS, TIER_LIMITS, TIER_STREAM } from "../rate-limit/policy.ts";
import type { BillingRepo } from "./billing.repo.ts";
import type { BillingTask } from "./jobs.ts";
import type { MeterName } from "./settings.service.ts";
import { quotaAlertEmail } from "./usage.emails.ts";

export const ALERT_THRESHOLDS = [80, 100] as const;

export interface UsageAlertsDeps {
  readonly db: Db;
  readonly repo: BillingRepo;
  readonly now: () => number;
  readonly email: { enqueue(message: EmailMessage): void };
  readonly billingUrl: string;
}

/**
 * Quota alerts (docs/billing.md, "Overage"): one email to the owner when a customer's month
 * reaches 80 % and one at 100 % of its included quota, per meter (requests, stream seconds), for
 * every customer with a finite included quota (free and pro, overage or not). Each alert is
 * recorded in billing_usage_alerts first (INSERT ... ON CONFLICT DO NOTHING RETURNING) and sent
 * only when this run inserted it, so several instances or ticks send it once. When a month jumps
 * past both thresholds between two runs, both are recorded and only the 100 % email goes out.
 */
export class UsageAlerts implements BillingTask {
  readonly name = "alerts";
  private readonly deps: UsageAlertsDeps;

  constructor(deps: UsageAlertsDeps) {
    this.deps = deps;
  }

  async run(): Promise<void> {
    const { db } = this.deps;
    const period = calendar(this.deps.now()).month;
    // Candidates: customers at 80 % or more of a finite included quota (a null quota compares as
    // null, never true); the exact check is below.
    const defaults = (pick: (t: keyof typeof TIER_LIMITS) => number | null) =>
      sql`case ${customers.tier} ${sql.join(
        (Object.keys(TIER_LIMITS) as (keyof typeof TIER_LIMITS)[]).map((t) => sql`when ${t} then ${pick(t)}::bigint`),
        sql` `,
      )} end`;
    const includedRequests = sql`coalesce(${customers.quotaPerMonth}, ${defaults((t) => TIER_LIMITS[t].perMonth)})`;
    const includedStream = sql`coalesce(${customers.streamSecondsPerMonth}, ${defaults((t) => TIER_STREAM[t].secondsPerMonth)})`;
    const rows = await db
      .select({
        customerId: customers.id,
        tier: customers.tier,
        quotaPerMonth: customers.quotaPerMonth,
        streamSecondsPerMonth: customers.streamSecondsPerMonth,
        overageEnabled: customers.overageEnabled,
        capRequests: customers.overageCapRequests,
        capStream: customers.overageCapStreamSeconds,
        requests: usageCounters.requests,
        streamMs: usageCounters.streamMs,
      })
      .from(usageCounters)
      .innerJoin(customers, eq(customers.id, usageCounters.customerId))
      .where(
        and(
          eq(usageCounters.month, period),
          sql`(${usageCounters.requests} * 100 >= 80 * ${includedRequests} or ${usageCounters.streamMs} / 10 >= 80 * ${includedStream})`,
        ),
      );
    for (const r of rows) {
      const overage = r.overageEnabled && OVERAGE_TIERS.includes(r.tier);
      const meters: { meter: MeterName; used: number; included: number | null; cap: number | null }[] = [
        {
          meter: "requests",
          used: r.requests,
          included: r.quotaPerMonth ?? TIER_LIMITS[r.tier].perMonth,
          cap: overage ? r.capRequests : null,
        },
        {
          meter: "stream_seconds",
          used: Math.floor(r.streamMs / 1000),
          included: r.streamSecondsPerMonth ?? TIER_STREAM[r.tier].secondsPerMonth,
          cap: overage ? r.capStream : null,
        },
      ];
      for (const m of meters) {
        const included = m.included;
        if (included === null || included <= 0) continue;
        const reached = ALERT_THRESHOLDS.filter((t) => m.used * 100 >= included * t);
        if (reached.length === 0) continue;
        const inserted = await db
          .insert(billingUsageAlerts)
          .values(reached.map((threshold) => ({ customerId: r.customerId, period, meter: m.meter, threshold })))
          .onConflictDoNothing()
          .returning({ threshold: billingUsageAlerts.threshold });
        if (inserted.length === 0) continue;
        const threshold = Math.max(...inserted.map((i) => i.threshold));
        const to = await this.deps.repo.ownerEmail(r.customerId);
        if (to === undefined) continue;
        this.deps.email.enqueue(
          quotaAlertEmail({
            to,
            meter: m.meter,
            threshold,
            used: m.used,
            included,
            period,
            overageCap: m.cap,
            billingUrl: this.deps.billingUrl,
          }),
        );
      }
    }
  }
}
