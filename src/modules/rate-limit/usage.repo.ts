import { and, eq, inArray, sql } from "drizzle-orm";
import type { Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import { customers, usageCounters } from "../../platform/db/schema/index.ts";
import type { LimitOverrides, StreamOverrides } from "./policy.ts";

export interface MonthIncrement {
  readonly customerId: string;
  readonly month: string;
  readonly requests: number;
  /** Stream session time in ms. */
  readonly streamMs: number;
}

export interface CustomerLimitRow extends LimitOverrides {
  readonly tier: Tier;
}

export interface CustomerStreamRow extends StreamOverrides {
  readonly tier: Tier;
}

export class UsageRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async monthCount(customerId: string, month: string): Promise<number> {
    const rows = await this.db
      .select({ requests: usageCounters.requests })
      .from(usageCounters)
      .where(and(eq(usageCounters.customerId, customerId), eq(usageCounters.month, month)))
      .limit(1);
    return rows[0]?.requests ?? 0;
  }

  async monthStreamMs(customerId: string, month: string): Promise<number> {
    const rows = await this.db
      .select({ streamMs: usageCounters.streamMs })
      .from(usageCounters)
      .where(and(eq(usageCounters.customerId, customerId), eq(usageCounters.month, month)))
      .limit(1);
    return rows[0]?.streamMs ?? 0;
  }

  /** One statement for the whole batch; counts add up, so replays after a failure are safe only once. */
  async addMonthly(batch: readonly MonthIncrement[]): Promise<void> {
    if (batch.length === 0) return;
    // Counts of a customer deleted while they were pending (erased on another instance, or a
    // request finishing after the erasure) would fail the foreign key, and with it every other
    // customer's counts on every flush: drop them (the customer's data is gone by design).
    const ids = [...new Set(batch.map((b) => b.customerId))];
    const alive = new Set(
      (await this.db.select({ id: customers.id }).from(customers).where(inArray(customers.id, ids))).map((r) => r.id),
    );
    const rows = batch.filter((b) => alive.has(b.customerId));
    if (rows.length === 0) return;
    await this.db
      .insert(usageCounters)
      .values(
        rows.map((b) => ({ customerId: b.customerId, month: b.month, requests: b.requests, streamMs: b.streamMs })),
      )
      .onConflictDoUpdate({
        target: [usageCounters.customerId, usageCounters.month],
        set: {
          requests: sql`${usageCounters.requests} + excluded.requests`,
          streamMs: sql`${usageCounters.streamMs} + excluded.stream_ms`,
          updatedAt: sql`now()`,
        },
      });
  }

  async customerLimits(customerId: string): Promise<CustomerLimitRow | undefined> {
    const rows = await this.db
      .select({
        tier: customers.tier,
        rateLimitPerMinute: customers.rateLimitPerMinute,
        quotaPerDay: customers.quotaPerDay,
        quotaPerMonth: customers.quotaPerMonth,
        overageEnabled: customers.overageEnabled,
        overageCapRequests: customers.overageCapRequests,
      })
      .from(customers)
      .where(eq(customers.id, customerId))
      .limit(1);
    return rows[0];
  }

  async customerStreamLimits(customerId: string): Promise<CustomerStreamRow | undefined> {
    const rows = await this.db
      .select({
        tier: customers.tier,
        streamSecondsPerDay: customers.streamSecondsPerDay,
        streamSecondsPerMonth: customers.streamSecondsPerMonth,
        streamMaxFps: customers.streamMaxFps,
        overageEnabled: customers.overageEnabled,
        overageCapStreamSeconds: customers.overageCapStreamSeconds,
      })
      .from(customers)
      .where(eq(customers.id, customerId))
      .limit(1);
    return rows[0];
  }
}
