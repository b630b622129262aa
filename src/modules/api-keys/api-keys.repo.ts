import { and, desc, eq, inArray, isNull, or, sql } from "drizzle-orm";
import type { Scope, Tier } from "../../platform/auth.ts";
import type { Db } from "../../platform/db/client.ts";
import { type ApiKeyRow, apiKeys, customers } from "../../platform/db/schema/index.ts";

/** Everything verification needs, in one query: the key, its customer's tier, limits and suspension. */
export interface KeyForVerification {
  readonly id: string;
  readonly customerId: string;
  readonly scopes: readonly Scope[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly tier: Tier;
  readonly rateLimitPerMinute: number | null;
  readonly quotaPerDay: number | null;
  readonly quotaPerMonth: number | null;
  readonly overageEnabled: boolean;
  readonly overageCapRequests: number | null;
  /** The customer's suspension by the operator (null: active). */
  readonly suspendedAt: Date | null;
  readonly suspendedReason: string | null;
  readonly robotId: string | null;
  readonly model: string | null;
  readonly unnormKey: string | null;
}

/** A key's inference defaults as stored (null: none). */
export interface KeyDefaultColumns {
  readonly robotId: string | null;
  readonly model: string | null;
  readonly unnormKey: string | null;
}

export interface NewKey {
  readonly customerId: string;
  readonly name: string;
  readonly keyHash: string;
  readonly displayPrefix: string;
  readonly scopes: readonly Scope[];
  readonly expiresAt: Date | null;
  readonly createdByUserId: string | null;
  readonly robotId?: string | null;
  readonly model?: string | null;
  readonly unnormKey?: string | null;
}

export class ApiKeysRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async findForVerification(keyHash: string): Promise<KeyForVerification | undefined> {
    const rows = await this.db
      .select({
        id: apiKeys.id,
        customerId: apiKeys.customerId,
        scopes: apiKeys.scopes,
        expiresAt: apiKeys.expiresAt,
        revokedAt: apiKeys.revokedAt,
        tier: customers.tier,
        rateLimitPerMinute: customers.rateLimitPerMinute,
        quotaPerDay: customers.quotaPerDay,
        quotaPerMonth: customers.quotaPerMonth,
        overageEnabled: customers.overageEnabled,
        overageCapRequests: customers.overageCapRequests,
        suspendedAt: customers.suspendedAt,
        suspendedReason: customers.suspendedReason,
        robotId: apiKeys.robotId,
        model: apiKeys.model,
        unnormKey: apiKeys.unnormKey,
      })
      .from(apiKeys)
      .innerJoin(customers, eq(customers.id, apiKeys.customerId))
      .where(eq(apiKeys.keyHash, keyHash))
      .limit(1);
    const row = rows[0];
    return row === undefined ? undefined : { ...row, scopes: row.scopes as Scope[] };
  }

  async list(customerId: string, limit: number): Promise<ApiKeyRow[]> {
    return this.db
      .select()
      .from(apiKeys)
      .where(eq(apiKeys.customerId, customerId))
      .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id))
      .limit(limit);
  }

  /** Scoped to the customer: another customer's id is simply not found. */
  async get(customerId: string, id: string): Promise<ApiKeyRow | undefined> {
    const rows = await this.db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.id, id), eq(apiKeys.customerId, customerId)))
      .limit(1);
    return rows[0];
  }

  async countUsable(customerId: string, now: Date): Promise<number> {
    const rows = await this.db
      .select({ n: sql<number>`count(*)::int` })
      .from(apiKeys)
      .where(
        and(eq(apiKeys.customerId, customerId), or(isNull(apiKeys.revokedAt), sql`${apiKeys.revokedAt} > ${now}`)),
      );
    return rows[0]?.n ?? 0;
  }

  async insert(k: NewKey): Promise<ApiKeyRow> {
    const [row] = await this.db
      .insert(apiKeys)
      .values({ ...k, scopes: [...k.scopes] })
      .returning();
    if (row === undefined) throw new Error("api key insert returned nothing");
    return row;
  }

  async update(
    customerId: string,
    id: string,
    changes: { name?: string | undefined; scopes?: readonly Scope[] | undefined; defaults?: KeyDefaultColumns },
    now: Date,
  ): Promise<ApiKeyRow | undefined> {
    const [row] = await this.db
      .update(apiKeys)
      .set({
        ...(changes.name === undefined ? {} : { name: changes.name }),
        ...(changes.scopes === undefined ? {} : { scopes: [...changes.scopes] }),
        ...(changes.defaults === undefined ? {} : changes.defaults),
        updatedAt: now,
      })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.customerId, customerId)))
      .returning();
    return row;
  }

  /** Revokes now; a key already revoked (or rotating) keeps the earlier of the two times. */
  async revoke(customerId: string, id: string, now: Date): Promise<ApiKeyRow | undefined> {
    const [row] = await this.db
      .update(apiKeys)
      .set({
        revokedAt: sql`least(coalesce(${apiKeys.revokedAt}, ${now}), ${now})`,
        updatedAt: now,
      })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.customerId, customerId)))
      .returning();
    return row;
  }

  /**
   * Creates the replacement and schedules the old key's end in one transaction. Returns
   * undefined when the old key is unknown, or "not_active" when it is already revoked,
   * rotating or expired.
   */
  async rotate(
    customerId: string,
    id: string,
    replacement: Pick<NewKey, "keyHash" | "displayPrefix" | "createdByUserId">,
    now: Date,
    graceEndsAt: Date,
  ): Promise<{ old: ApiKeyRow; created: ApiKeyRow } | "not_active" | undefined> {
    return this.db.transaction(async (tx) => {
      const [old] = await tx
        .select()
        .from(apiKeys)
        .where(and(eq(apiKeys.id, id), eq(apiKeys.customerId, customerId)))
        .for("update")
        .limit(1);
      if (old === undefined) return undefined;
      if (old.revokedAt !== null || (old.expiresAt !== null && old.expiresAt <= now)) return "not_active";
      const [created] = await tx
        .insert(apiKeys)
        .values({
          customerId,
          name: old.name,
          scopes: old.scopes,
          expiresAt: old.expiresAt,
          robotId: old.robotId,
          model: old.model,
          unnormKey: old.unnormKey,
          keyHash: replacement.keyHash,
          displayPrefix: replacement.displayPrefix,
          createdByUserId: replacement.createdByUserId,
        })
        .returning();
      if (created === undefined) throw new Error("api key insert returned nothing");
      const [updated] = await tx
        .update(apiKeys)
        .set({ revokedAt: graceEndsAt, replacedById: created.id, updatedAt: now })
        .where(eq(apiKeys.id, old.id))
        .returning();
      return { old: updated ?? old, created };
    });
  }

  /** Forward-only: never moves last_used_at backwards, whatever order batches arrive in. */
  async touchLastUsed(ids: readonly string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.db
      .update(apiKeys)
      .set({ lastUsedAt: at })
      .where(and(inArray(apiKeys.id, [...ids]), or(isNull(apiKeys.lastUsedAt), sql`${apiKeys.lastUsedAt} < ${at}`)));
  }

  async hashesOfCustomer(customerId: string): Promise<string[]> {
    const rows = await this.db.select({ h: apiKeys.keyHash }).from(apiKeys).where(eq(apiKeys.customerId, customerId));
    return rows.map((r) => r.h);
  }
}
