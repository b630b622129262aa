import { and, asc, desc, eq, inArray, isNotNull, isNull, or, type SQL, sql } from "drizzle-orm";
import type { Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import {
  apiKeys,
  type CustomerRow,
  customerAdminMetrics,
  customers,
  safetyIncidents,
  usageCounters,
  usageHourlyMetrics,
  users,
} from "../../platform/db/schema/index.ts";

export type CustomerSort = "created_at" | "requests_30d" | "mrr";
export type SortOrder = "asc" | "desc";

export interface CustomerListFilter {
  /** Case-insensitive substring of the customer's email, name or company. */
  readonly q?: string | undefined;
  readonly tier?: Tier | undefined;
  readonly status?: "active" | "suspended" | undefined;
}

export interface CustomerListPage {
  readonly sort: CustomerSort;
  readonly order: SortOrder;
  readonly limit: number;
  readonly cursor?: string | undefined;
}

export interface CustomerSummary {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly company: string | null;
  readonly tier: Tier;
  readonly createdAt: Date;
  readonly subscriptionStatus: string | null;
  readonly mrrMinor: number;
  readonly subscriptionCurrency: string | null;
  readonly suspendedAt: Date | null;
  readonly suspendedReason: string | null;
  readonly members: number;
  readonly activeKeys: number;
  readonly requestsThisMonth: number;
  readonly requests30d: number;
  readonly lastActivityAt: Date | null;
}

export class InvalidCustomerCursorError extends Error {
  constructor() {
    super("invalid cursor");
    this.name = "InvalidCustomerCursorError";
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Opaque keyset cursor: base64url of a JSON `[sort, order, value, id]` of a page's last row. The
 * id breaks ties, so rows with equal sort values are neither repeated nor skipped. A cursor is
 * valid only for the sort and order that produced it.
 */
export function encodeCursor(sort: CustomerSort, order: SortOrder, value: string | number, id: string): string {
  return Buffer.from(JSON.stringify([sort, order, value, id])).toString("base64url");
}

export function decodeCursor(cursor: string, sort: CustomerSort, order: SortOrder): { value: string; id: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new InvalidCustomerCursorError();
  }
  if (!Array.isArray(parsed) || parsed.length !== 4) throw new InvalidCustomerCursorError();
  const [s, o, value, id] = parsed as unknown[];
  if (s !== sort || o !== order || typeof id !== "string" || !UUID_RE.test(id)) throw new InvalidCustomerCursorError();
  if (sort === "created_at") {
    if (typeof value !== "string" || Number.isNaN(Date.parse(value))) throw new InvalidCustomerCursorError();
    return { value, id };
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw new InvalidCustomerCursorError();
  return { value: String(value), id };
}

/** Escapes LIKE metacharacters so `q` is a plain substring. */
function likePattern(q: string): string {
  return `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** created_at to the microsecond (PostgreSQL's precision; a JS Date would cut it to ms and repeat rows). */
const CREATED_AT_US = sql<string>`to_char(${customers.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const REQUESTS_30D = sql<number>`coalesce(${customerAdminMetrics.requests30d}, 0)`;

/** Reads and changes behind the admin customer routes and the operator CLI. */
export class AdminCustomersRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async exists(customerId: string): Promise<boolean> {
    const rows = await this.db.select({ id: customers.id }).from(customers).where(eq(customers.id, customerId));
    return rows.length > 0;
  }

  /**
   * The first step of `list`: the page's ids and sort values (the benchmark EXPLAINs it).
   * Throws InvalidCustomerCursorError for a cursor of another sort or a malformed one.
   */
  pageQuery(filter: CustomerListFilter, page: CustomerListPage) {
    const conds: (SQL | undefined)[] = [];
    if (filter.q !== undefined && filter.q !== "") {
      const p = likePattern(filter.q);
      conds.push(
        or(
          sql`${customers.email} ilike ${p}`,
          sql`${customers.name} ilike ${p}`,
          sql`coalesce(${customers.company}, '') ilike ${p}`,
        ),
      );
    }
    if (filter.tier !== undefined) conds.push(eq(customers.tier, filter.tier));
    if (filter.status === "active") conds.push(isNull(customers.suspendedAt));
    if (filter.status === "suspended") conds.push(isNotNull(customers.suspendedAt));

    const key: SQL =
      page.sort === "created_at"
        ? sql`${customers.createdAt}`
        : page.sort === "mrr"
          ? sql`${customers.mrrMinor}`
          : REQUESTS_30D;
    if (page.cursor !== undefined) {
      const c = decodeCursor(page.cursor, page.sort, page.order);
      const v = page.sort === "created_at" ? sql`${c.value}::timestamptz` : sql`${c.value}::bigint`;
      conds.push(
        page.order === "desc"
          ? sql`(${key}, ${customers.id}) < (${v}, ${c.id}::uuid)`
          : sql`(${key}, ${customers.id}) > (${v}, ${c.id}::uuid)`,
      );
    }
    const dir = page.order === "desc" ? desc : asc;
    const base = this.db
      .select({ id: customers.id, createdAt: CREATED_AT_US, mrr: customers.mrrMinor, r30: REQUESTS_30D })
      .from(customers);
    return base
      .leftJoin(customerAdminMetrics, eq(customerAdminMetrics.customerId, customers.id))
      .where(and(...conds))
      .orderBy(dir(key), dir(customers.id))
      .limit(page.limit + 1);
  }

  /**
   * One page in two steps: the page's ids by keyset over indexed (or precomputed) sort values,
   * then the per-customer counts for those ids only, so the cost does not grow with the page depth.
   */
  async list(
    filter: CustomerListFilter,
    page: CustomerListPage,
    now: Date,
  ): Promise<{ items: CustomerSummary[]; nextCursor: string | null }> {
    const rows = await this.pageQuery(filter, page);
    const pageRows = rows.slice(0, page.limit);
    const last = pageRows[pageRows.length - 1];
    let nextCursor: string | null = null;
    if (rows.length > page.limit && last !== undefined) {
      const value =
        page.sort === "created_at" ? last.createdAt : page.sort === "mrr" ? Number(last.mrr) : Number(last.r30);
      nextCursor = encodeCursor(page.sort, page.order, value, last.id);
    }
    const details = await this.summaries(
      pageRows.map((r) => r.id),
      now,
    );
    const byId = new Map(details.map((d) => [d.id, d]));
    return { items: pageRows.map((r) => byId.get(r.id)).filter((d) => d !== undefined), nextCursor };
  }

  /** The list's columns for these customers (any order). */
  async summaries(ids: readonly string[], now: Date): Promise<CustomerSummary[]> {
    if (ids.length === 0) return [];
    const month = monthOf(now);
    const rows = await this.db
      .select({
        c: customers,
        members: sql<number>`(select count(*) from ${users} where ${users.customerId} = ${customers.id})`,
        activeKeys: sql<number>`(select count(*) from ${apiKeys} where ${apiKeys.customerId} = ${customers.id}
          and (${apiKeys.revokedAt} is null or ${apiKeys.revokedAt} > ${now.toISOString()}::timestamptz)
          and (${apiKeys.expiresAt} is null or ${apiKeys.expiresAt} > ${now.toISOString()}::timestamptz))`,
        requestsThisMonth: sql<number>`coalesce((select ${usageCounters.requests} from ${usageCounters}
          where ${usageCounters.customerId} = ${customers.id} and ${usageCounters.month} = ${month}::date), 0)`,
        requests30d: REQUESTS_30D,
        lastKeyUse: sql<
          string | null
        >`(select max(${apiKeys.lastUsedAt}) from ${apiKeys} where ${apiKeys.customerId} = ${customers.id})`,
        lastLogin: sql<
          string | null
        >`(select max(${users.lastLoginAt}) from ${users} where ${users.customerId} = ${customers.id})`,
      })
      .from(customers)
      .leftJoin(customerAdminMetrics, eq(customerAdminMetrics.customerId, customers.id))
      .where(inArray(customers.id, [...ids]));
    return rows.map((r) => ({
      id: r.c.id,
      name: r.c.name,
      email: r.c.email,
      company: r.c.company,
      tier: r.c.tier,
      createdAt: r.c.createdAt,
      subscriptionStatus: r.c.subscriptionStatus,
      mrrMinor: Number(r.c.mrrMinor),
      subscriptionCurrency: r.c.subscriptionCurrency,
      suspendedAt: r.c.suspendedAt,
      suspendedReason: r.c.suspendedReason,
      members: Number(r.members),
      activeKeys: Number(r.activeKeys),
      requestsThisMonth: Number(r.requestsThisMonth),
      requests30d: Number(r.requests30d),
      lastActivityAt: latest(r.lastKeyUse, r.lastLogin),
    }));
  }

  async customer(customerId: string): Promise<CustomerRow | undefined> {
    const [row] = await this.db.select().from(customers).where(eq(customers.id, customerId));
    return row;
  }

  async members(customerId: string) {
    return this.db
      .select({
        id: users.id,
        email: users.email,
        fullName: users.fullName,
        role: users.role,
        isSuperuser: users.isSuperuser,
        isActive: users.isActive,
        emailVerifiedAt: users.emailVerifiedAt,
        lastLoginAt: users.lastLoginAt,
        createdAt: users.createdAt,
      })
      .from(users)
      .where(eq(users.customerId, customerId))
      .orderBy(asc(users.createdAt), asc(users.id));
  }

  /** Key metadata (never the hash). */
  async keys(customerId: string) {
    return this.db
      .select({
        id: apiKeys.id,
        name: apiKeys.name,
        displayPrefix: apiKeys.displayPrefix,
        scopes: apiKeys.scopes,
        robotId: apiKeys.robotId,
        expiresAt: apiKeys.expiresAt,
        revokedAt: apiKeys.revokedAt,
        lastUsedAt: apiKeys.lastUsedAt,
        createdAt: apiKeys.createdAt,
      })
      .from(apiKeys)
      .where(eq(apiKeys.customerId, customerId))
      .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id));
  }

  /**
   * Usage from the rollups (never inference_logs): today and the last 30 UTC days by day from
   * `usage_hourly_metrics`, this month from the limiter's durable `usage_counters`.
   */
  async usage(customerId: string, now: Date) {
    const today = dayOf(now);
    const from = new Date(Date.parse(`${today}T00:00:00.000Z`) - 29 * 86_400_000);
    const days = await this.db
      .select({
        day: sql<string>`to_char(date_trunc('day', ${usageHourlyMetrics.hour} at time zone 'UTC'), 'YYYY-MM-DD')`,
        requests: sql<number>`sum(${usageHourlyMetrics.requests})`,
        errors: sql<number>`sum(${usageHourlyMetrics.errors})`,
      })
      .from(usageHourlyMetrics)
      .where(
        and(
          eq(usageHourlyMetrics.customerId, customerId),
          sql`${usageHourlyMetrics.hour} >= ${from.toISOString()}::timestamptz`,
        ),
      )
      .groupBy(sql`1`)
      .orderBy(sql`1`);
    const [month] = await this.db
      .select({ requests: usageCounters.requests, streamMs: usageCounters.streamMs })
      .from(usageCounters)
      .where(and(eq(usageCounters.customerId, customerId), eq(usageCounters.month, monthOf(now))));
    const byDay = new Map(days.map((d) => [d.day, { requests: Number(d.requests), errors: Number(d.errors) }]));
    const last30: { day: string; requests: number; errors: number }[] = [];
    for (let i = 0; i < 30; i++) {
      const day = dayOf(new Date(from.getTime() + i * 86_400_000));
      last30.push({ day, ...(byDay.get(day) ?? { requests: 0, errors: 0 }) });
    }
    return {
      today: byDay.get(today) ?? { requests: 0, errors: 0 },
      month: { requests: Number(month?.requests ?? 0), streamSeconds: Math.floor(Number(month?.streamMs ?? 0) / 1000) },
      last30,
    };
  }

  async incidentCounts(customerId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .select({ severity: safetyIncidents.severity, n: sql<number>`count(*)` })
      .from(safetyIncidents)
      .where(eq(safetyIncidents.customerId, customerId))
      .groupBy(safetyIncidents.severity);
    const out: Record<string, number> = { low: 0, medium: 0, high: 0, critical: 0 };
    for (const r of rows) out[r.severity] = Number(r.n);
    return out;
  }

  /**
   * Sets the tier or limit overrides (only the fields given; null resets one to the tier default)
   * and writes the audit entry in the same transaction. Returns the row before and after, or
   * undefined for an unknown customer.
   */
  async update(
    customerId: string,
    set: Partial<Pick<CustomerRow, "tier" | "rateLimitPerMinute" | "quotaPerDay" | "quotaPerMonth">>,
    audit: (tx: Db, before: CustomerRow, after: CustomerRow) => Promise<void>,
  ): Promise<{ before: CustomerRow; after: CustomerRow } | undefined> {
    return this.db.transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      const [before] = await tx.select().from(customers).where(eq(customers.id, customerId)).for("update");
      if (before === undefined) return undefined;
      const [after] = await tx
        .update(customers)
        .set({ ...set, updatedAt: sql`now()` })
        .where(eq(customers.id, customerId))
        .returning();
      if (after === undefined) return undefined;
      await audit(tx, before, after);
      return { before, after };
    });
  }

  /**
   * Recomputes every customer's `requests_30d` from `usage_hourly_metrics` (one statement; rows
   * whose value did not move are not rewritten). Returns the number of rows written.
   */
  async refreshMetrics(now: Date): Promise<number> {
    const from = new Date(now.getTime() - 30 * 86_400_000);
    const res = await this.db.execute(sql`
      insert into ${customerAdminMetrics} (customer_id, requests_30d, refreshed_at)
      select c.id, coalesce(u.n, 0), ${now.toISOString()}::timestamptz
      from ${customers} c
      left join (
        select customer_id, sum(requests)::bigint as n from ${usageHourlyMetrics}
        where hour >= ${from.toISOString()}::timestamptz group by customer_id
      ) u on u.customer_id = c.id
      on conflict (customer_id) do update
        set requests_30d = excluded.requests_30d, refreshed_at = excluded.refreshed_at
        where ${customerAdminMetrics}.requests_30d is distinct from excluded.requests_30d`);
    return (res as unknown as { rowCount?: number | null }).rowCount ?? 0;
  }
}

function latest(...values: (string | Date | null)[]): Date | null {
  let best: Date | null = null;
  for (const v of values) {
    if (v === null) continue;
    const d = v instanceof Date ? v : new Date(v);
    if (best === null || d.getTime() > best.getTime()) best = d;
  }
  return best;
}

export function dayOf(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export function monthOf(d: Date): string {
  return `${d.toISOString().slice(0, 7)}-01`;
}
