import { and, eq, inArray, isNotNull, or, sql } from "drizzle-orm";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Db } from "../../platform/db/client.ts";
import { billingMeterReports, customers, usageCounters } from "../../platform/db/schema/index.ts";
import { calendar } from "../rate-limit/calendar.ts";
import { OVERAGE_TIERS, TIER_LIMITS, TIER_STREAM } from "../rate-limit/policy.ts";
import { type BillingClient, BillingUnavailableError } from "./billing-client.ts";
import type { BillingTask } from "./jobs.ts";
import { METERS, type MeterName } from "./settings.service.ts";

interface Logger {
  warn(obj: object, msg: string): void;
}

export interface OverageReporterDeps {
  readonly db: Db;
  readonly client: BillingClient;
  readonly now: () => number;
  /** Billing Meter event names (config.billing.meterEventRequests / meterEventStreamSeconds). */
  readonly eventNames: Readonly<Record<MeterName, string>>;
  readonly log: Logger;
  readonly registry: Registry;
  /** Usage is flushed in batches: a month's overage is still computed this long after it ended (default 1 h). */
  readonly lateMs?: number;
  readonly onStripeFailure?: (operation: string) => void;
}

/** What one row needs to decide, read under the row's lock. */
interface ReportRow {
  readonly customerId: string;
  readonly period: string;
  readonly meter: string;
  readonly reported: number;
  readonly pendingTo: number | null;
  readonly pendingIdentifier: string | null;
  readonly updatedAt: Date;
  readonly tier: "free" | "pro" | "enterprise";
  readonly stripeCustomerId: string | null;
  readonly quotaPerMonth: number | null;
  readonly streamSecondsPerMonth: number | null;
  readonly capRequests: number | null;
  readonly capStream: number | null;
  readonly requests: number | null;
  readonly streamMs: number | null;
}

interface Send {
  readonly customerId: string;
  readonly period: string;
  readonly meter: MeterName;
  readonly stripeCustomerId: string;
  readonly from: number;
  readonly to: number;
  readonly identifier: string;
  readonly timestamp: number;
}

/** The first instant of the month after `period` ("YYYY-MM-01"), ms since the epoch. */
function periodEnd(period: string): number {
  const [y, m] = period.split("-").map(Number) as [number, number];
  return Date.UTC(y, m, 1);
}

/** The month before `period`, as "YYYY-MM-01". */
function previousPeriod(period: string): string {
  const [y, m] = period.split("-").map(Number) as [number, number];
  return calendar(Date.UTC(y, m - 2, 1)).month;
}

/**
 * The overage of one meter in one period that should have been reported by now:
 * min(max(0, used - included), cap). Zero for a tier that cannot have overage or without a cap.
 */
export function overageTotal(row: ReportRow, meter: MeterName): number {
  if (!OVERAGE_TIERS.includes(row.tier)) return 0;
  const included =
    meter === "requests"
      ? (row.quotaPerMonth ?? TIER_LIMITS[row.tier].perMonth)
      : (row.streamSecondsPerMonth ?? TIER_STREAM[row.tier].secondsPerMonth);
  const cap = meter === "requests" ? row.capRequests : row.capStream;
  if (included === null || cap === null) return 0;
  const used = meter === "requests" ? (row.requests ?? 0) : Math.floor((row.streamMs ?? 0) / 1000);
  return Math.min(Math.max(0, used - included), cap);
}

/**
 * Reports metered overage to Stripe Billing Meters, off the request path, exactly once per unit
 * (docs/billing.md, "Overage"). Per (customer, month, meter) row of billing_meter_reports, under
 * that row's lock (FOR UPDATE SKIP LOCKED, so instances share the work without a global lock):
 *
 * 1. a pending report (written before, not acknowledged: Stripe down, or a crash) is resent with
 *    the SAME identifier and timestamp: Stripe de-duplicates by identifier, so it counts once;
 * 2. else, when the overage so far exceeds what was reported, the range `reported..target` is
 *    written as pending with identifier `<customer>:<period>:<meter>:<reported>-<target>` and
 *    committed BEFORE Stripe hears of it;
 * 3. then the meter event (value target - reported) is sent, and acknowledged (`reported` =
 *    `pending_to`, pending cleared) only if the row still holds that identifier.
 *
 * Ranges are contiguous and never overlap, and an identifier always names the same range, so a
 * crash or outage at any step neither drops a unit nor counts one twice.
 */
export class OverageReporter implements BillingTask {
  readonly name = "overage";
  private readonly deps: OverageReporterDeps;
  private readonly reportedUnits: Counter<"meter">;
  private readonly failures: Counter<"meter">;
  private readonly pending: Gauge;
  /**
   * Fault injection (tests): runs after Stripe accepted a report, before it is acknowledged in
   * the database. Throwing here is a crash between sending and acknowledging.
   */
  beforeAck: ((identifier: string) => void | Promise<void>) | undefined;

  constructor(deps: OverageReporterDeps) {
    this.deps = deps;
    this.reportedUnits = new Counter({
      name: "vla_billing_overage_reported_total",
      help: "Overage units acknowledged as reported to Stripe Billing Meters, by meter (requests, stream_seconds).",
      labelNames: ["meter"],
      registers: [deps.registry],
    });
    this.failures = new Counter({
      name: "vla_billing_overage_report_failures_total",
      help: "Overage meter events Stripe did not accept (left pending, resent with the same identifier next tick).",
      labelNames: ["meter"],
      registers: [deps.registry],
    });
    this.pending = new Gauge({
      name: "vla_billing_overage_pending_reports",
      help: "Overage reports written but not yet acknowledged by Stripe (after the last overage run).",
      registers: [deps.registry],
    });
  }

  async run(): Promise<void> {
    const { db } = this.deps;
    const now = this.deps.now();
    const current = calendar(now).month;
    const periods = [current];
    if (now - Date.parse(`${current}T00:00:00Z`) < (this.deps.lateMs ?? 3_600_000)) {
      periods.push(previousPeriod(current));
    }
    // Every opted-in customer gets its rows for this month (the settings route creates them too).
    await db.execute(sql`
      insert into billing_meter_reports (customer_id, period, meter)
      select c.id, ${current}::date, m.meter
      from customers c cross join (values ('requests'), ('stream_seconds')) as m(meter)
      where c.overage_enabled and c.stripe_customer_id is not null
        and c.tier in (${sql.join(
          OVERAGE_TIERS.map((t) => sql`${t}`),
          sql`, `,
        )})
      on conflict do nothing`);
    const keys = await db
      .select({
        customerId: billingMeterReports.customerId,
        period: billingMeterReports.period,
        meter: billingMeterReports.meter,
      })
      .from(billingMeterReports)
      .where(or(isNotNull(billingMeterReports.pendingTo), inArray(billingMeterReports.period, periods)));
    try {
      for (const k of keys) {
        if (!(METERS as readonly string[]).includes(k.meter)) continue;
        const send = await this.claim(k.customerId, k.period, k.meter as MeterName, now);
        if (send === undefined) continue;
        const ok = await this.send(send);
        // Stripe down: the rest would fail too; everything pending is resent next tick.
        if (!ok) break;
      }
    } finally {
      const rows = await db
        .select({ n: sql<number>`count(*)::int` })
        .from(billingMeterReports)
        .where(isNotNull(billingMeterReports.pendingTo));
      this.pending.set(Number(rows[0]?.n ?? 0));
    }
  }

  /** Under the row's lock: the pending report to resend, or a new one written as pending; undefined: nothing to do. */
  private async claim(customerId: string, period: string, meter: MeterName, now: number): Promise<Send | undefined> {
    return this.deps.db.transaction(async (tx) => {
      const rows: ReportRow[] = await tx
        .select({
          customerId: billingMeterReports.customerId,
          period: billingMeterReports.period,
          meter: billingMeterReports.meter,
          reported: billingMeterReports.reported,
          pendingTo: billingMeterReports.pendingTo,
          pendingIdentifier: billingMeterReports.pendingIdentifier,
          updatedAt: billingMeterReports.updatedAt,
          tier: customers.tier,
          stripeCustomerId: customers.stripeCustomerId,
          quotaPerMonth: customers.quotaPerMonth,
          streamSecondsPerMonth: customers.streamSecondsPerMonth,
          capRequests: customers.overageCapRequests,
          capStream: customers.overageCapStreamSeconds,
          requests: usageCounters.requests,
          streamMs: usageCounters.streamMs,
        })
        .from(billingMeterReports)
        .innerJoin(customers, eq(customers.id, billingMeterReports.customerId))
        .leftJoin(
          usageCounters,
          and(
            eq(usageCounters.customerId, billingMeterReports.customerId),
            eq(usageCounters.month, billingMeterReports.period),
          ),
        )
        .where(
          and(
            eq(billingMeterReports.customerId, customerId),
            eq(billingMeterReports.period, period),
            eq(billingMeterReports.meter, meter),
          ),
        )
        .for("update", { of: billingMeterReports, skipLocked: true });
      const row = rows[0];
      if (row === undefined) return undefined; // another instance holds it, or it is gone
      if (row.pendingTo !== null && row.pendingIdentifier !== null) {
        if (row.stripeCustomerId === null) return undefined;
        return this.sendOf(row, meter, row.stripeCustomerId, row.reported, row.pendingTo, row.pendingIdentifier);
      }
      if (row.stripeCustomerId === null) return undefined;
      const target = overageTotal(row, meter);
      if (target <= row.reported) return undefined;
      const identifier = `${customerId}:${period}:${meter}:${row.reported}-${target}`;
      const at = new Date(now);
      await tx
        .update(billingMeterReports)
        .set({ pendingTo: target, pendingIdentifier: identifier, updatedAt: at })
        .where(
          and(
            eq(billingMeterReports.customerId, customerId),
            eq(billingMeterReports.period, period),
            eq(billingMeterReports.meter, meter),
          ),
        );
      return this.sendOf({ ...row, updatedAt: at }, meter, row.stripeCustomerId, row.reported, target, identifier);
    });
  }

  private sendOf(
    row: ReportRow,
    meter: MeterName,
    stripeCustomerId: string,
    from: number,
    to: number,
    identifier: string,
  ): Send {
    // The same timestamp on every resend (the SDK's idempotency key requires the same parameters):
    // when the pending report was written, inside its month so Stripe bills it in that period.
    const timestamp = Math.min(Math.floor(row.updatedAt.getTime() / 1000), periodEnd(row.period) / 1000 - 1);
    return { customerId: row.customerId, period: row.period, meter, stripeCustomerId, from, to, identifier, timestamp };
  }

  /** Sends and acknowledges one report; false when Stripe is unavailable (stop this tick). */
  private async send(s: Send): Promise<boolean> {
    try {
      await this.deps.client.reportMeterEvent({
        eventName: this.deps.eventNames[s.meter],
        stripeCustomerId: s.stripeCustomerId,
        value: s.to - s.from,
        identifier: s.identifier,
        timestamp: s.timestamp,
      });
    } catch (err) {
      this.failures.inc({ meter: s.meter });
      this.deps.onStripeFailure?.("report_meter_event");
      this.deps.log.warn(
        { err, customer_id: s.customerId, period: s.period, meter: s.meter, identifier: s.identifier },
        "overage report not accepted; it stays pending and is resent with the same identifier",
      );
      return !(err instanceof BillingUnavailableError);
    }
    await this.beforeAck?.(s.identifier);
    const acked = await this.deps.db
      .update(billingMeterReports)
      .set({ reported: s.to, pendingTo: null, pendingIdentifier: null, updatedAt: new Date(this.deps.now()) })
      .where(
        and(
          eq(billingMeterReports.customerId, s.customerId),
          eq(billingMeterReports.period, s.period),
          eq(billingMeterReports.meter, s.meter),
          eq(billingMeterReports.pendingIdentifier, s.identifier),
        ),
      )
      .returning({ reported: billingMeterReports.reported });
    if (acked.length > 0) this.reportedUnits.inc({ meter: s.meter }, s.to - s.from);
    return true;
  }
}
