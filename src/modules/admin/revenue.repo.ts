import { sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";

const DAY = 86_400_000;
const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

/** Amounts are in minor units (cents) of the currency. */
export interface CurrencyRevenue {
  readonly currency: string;
  readonly mrr: number;
  readonly arr: number;
  readonly subscriptions: number;
  readonly by_tier: Record<string, { readonly mrr: number; readonly subscriptions: number }>;
  readonly past_due: { readonly mrr: number; readonly subscriptions: number };
  readonly movement_30d: {
    readonly new: number;
    readonly expansion: number;
    readonly contraction: number;
    readonly churned: number;
    readonly net: number;
  };
}

export interface RevenueReport {
  readonly generated_at: string;
  readonly window: { readonly from: string; readonly to: string };
  readonly currencies: CurrencyRevenue[];
  /** Customers whose row says active/past_due but whose amount we have never recorded (run billing-reconcile). */
  readonly unpriced_subscriptions: number;
}

function empty(currency: string) {
  return {
    currency,
    mrr: 0,
    subscriptions: 0,
    by_tier: {} as Record<string, { mrr: number; subscriptions: number }>,
    past_due: { mrr: 0, subscriptions: 0 },
    movement: { new: 0, expansion: 0, contraction: 0, churned: 0 },
  };
}

/**
 * `GET /admin/stats/revenue`, from our own copy of the subscriptions (never a Stripe call): the
 * current MRR of a customer is the `mrr_after` of its latest `subscription_changes` row; the
 * 30-day movement classifies every change row of the window by its before/after amounts.
 * The exact formula is in docs/admin.md, "Revenue".
 */
export class RevenueRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async report(nowMs: number): Promise<RevenueReport> {
    const from = new Date(nowMs - 30 * DAY);
    const to = new Date(nowMs);
    const [current, moves, unpriced] = await Promise.all([
      this.db.execute(sql`select currency_after as currency, coalesce(price_tier, 'unknown') as tier, status,
            count(*)::int as n, sum(mrr_after)::float8 as mrr
          from (select distinct on (customer_id) customer_id, currency_after, price_tier, status, mrr_after
                from subscription_changes order by customer_id, at desc, id desc) latest
          where mrr_after > 0
          group by 1, 2, 3`),
      // One movement per change row of the window; a currency switch is a churn in the old
      // currency and a new subscription in the new one.
      this.db.execute(sql`select currency_before, currency_after, mrr_before::float8 as before, mrr_after::float8 as after
          from subscription_changes
          where at > ${from} and at <= ${to} and (mrr_before <> mrr_after or currency_before is distinct from currency_after)`),
      this.db.execute(sql`select count(*)::int as n from customers c
          where c.subscription_status in ('active', 'past_due')
            and not exists (select 1 from subscription_changes s where s.customer_id = c.id)`),
    ]);
    const by = new Map<string, ReturnType<typeof empty>>();
    const of = (cur: string) => {
      let e = by.get(cur);
      if (e === undefined) {
        e = empty(cur);
        by.set(cur, e);
      }
      return e;
    };
    for (const r of rowsOf<{ currency: string | null; tier: string; status: string; n: number; mrr: number }>(
      current,
    )) {
      if (r.currency === null) continue;
      const e = of(r.currency);
      e.mrr += r.mrr;
      e.subscriptions += r.n;
      const t = e.by_tier[r.tier] ?? { mrr: 0, subscriptions: 0 };
      e.by_tier[r.tier] = t;
      t.mrr += r.mrr;
      t.subscriptions += r.n;
      if (r.status === "past_due") {
        e.past_due.mrr += r.mrr;
        e.past_due.subscriptions += r.n;
      }
    }
    type Move = { currency_before: string | null; currency_after: string | null; before: number; after: number };
    for (const m of rowsOf<Move>(moves)) {
      const sameCurrency = m.currency_before === m.currency_after;
      if (sameCurrency && m.currency_after !== null && m.before > 0 && m.after > 0) {
        const e = of(m.currency_after);
        if (m.after > m.before) e.movement.expansion += m.after - m.before;
        else e.movement.contraction += m.before - m.after;
        continue;
      }
      if (m.before > 0 && m.currency_before !== null) of(m.currency_before).movement.churned += m.before;
      if (m.after > 0 && m.currency_after !== null) of(m.currency_after).movement.new += m.after;
    }
    const currencies = [...by.values()]
      .sort((a, b) => b.mrr - a.mrr || a.currency.localeCompare(b.currency))
      .map((e) => ({
        currency: e.currency,
        mrr: e.mrr,
        arr: e.mrr * 12,
        subscriptions: e.subscriptions,
        by_tier: e.by_tier,
        past_due: e.past_due,
        movement_30d: {
          ...e.movement,
          net: e.movement.new + e.movement.expansion - e.movement.contraction - e.movement.churned,
        },
      }));
    return {
      generated_at: to.toISOString(),
      window: { from: from.toISOString(), to: to.toISOString() },
      currencies,
      unpriced_subscriptions: rowsOf<{ n: number }>(unpriced)[0]?.n ?? 0,
    };
  }
}
