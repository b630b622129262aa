import { and, eq, gt, isNull, lt, or, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import {
  type CustomerRow,
  customers,
  type EmailTokenRow,
  emailTokens,
  type RefreshTokenRow,
  refreshTokens,
  type UserRow,
  users,
} from "../../platform/db/schema/index.ts";

/** What a request needs to know about the caller: the user and their customer's tier. */
export interface AccountRow {
  readonly id: string;
  readonly customerId: string;
  readonly role: UserRow["role"];
  readonly email: string;
  readonly fullName: string | null;
  readonly isSuperuser: boolean;
  readonly isActive: boolean;
  readonly emailVerifiedAt: Date | null;
  readonly tokenVersion: number;
  readonly createdAt: Date;
  readonly tier: CustomerRow["tier"];
  readonly company: string | null;
  /** The customer's suspension by the operator (null: active); sessions and sign-in are refused while set. */
  readonly suspendedAt: Date | null;
  readonly suspendedReason: string | null;
}

export type EmailTokenPurpose = EmailTokenRow["purpose"];

export type RotateResult =
  | { readonly kind: "ok"; readonly previous: RefreshTokenRow }
  | { readonly kind: "reused"; readonly familyId: string; readonly userId: string }
  | { readonly kind: "invalid" };

/** SQL of the auth module: sessions (refresh tokens), email tokens, account changes, audit. */
export class AuthRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async findAccount(userId: string): Promise<AccountRow | undefined> {
    const rows = await this.db
      .select({
        id: users.id,
        customerId: users.customerId,
        role: users.role,
        email: users.email,
        fullName: users.fullName,
        isSuperuser: users.isSuperuser,
        isActive: users.isActive,
        emailVerifiedAt: users.emailVerifiedAt,
        tokenVersion: users.tokenVersion,
        createdAt: users.createdAt,
        tier: customers.tier,
        company: customers.company,
        suspendedAt: customers.suspendedAt,
        suspendedReason: customers.suspendedReason,
      })
      .from(users)
      .innerJoin(customers, eq(customers.id, users.customerId))
      .where(eq(users.id, userId))
      .limit(1);
    return rows[0];
  }

  async setFullName(userId: string, fullName: string | null): Promise<void> {
    await this.db.update(users).set({ fullName, updatedAt: new Date() }).where(eq(users.id, userId));
  }

  /** Replaces the hash; with `bumpVersion` every access token minted before dies. Returns the new version. */
  async setPasswordHash(userId: string, passwordHash: string, bumpVersion: boolean): Promise<number | undefined> {
    const rows = await this.db
      .update(users)
      .set({
        passwordHash,
        updatedAt: new Date(),
        ...(bumpVersion ? { tokenVersion: sql`${users.tokenVersion} + 1` } : {}),
      })
      .where(eq(users.id, userId))
      .returning({ tokenVersion: users.tokenVersion });
    return rows[0]?.tokenVersion;
  }

  async bumpTokenVersion(userId: string): Promise<void> {
    await this.db
      .update(users)
      .set({ tokenVersion: sql`${users.tokenVersion} + 1`, updatedAt: new Date() })
      .where(eq(users.id, userId));
  }

  async markLogin(userId: string): Promise<void> {
    await this.db.update(users).set({ lastLoginAt: new Date() }).where(eq(users.id, userId));
  }

  /** Marks the address verified, only if it is still the user's address. */
  async markEmailVerified(userId: string, email: string): Promise<boolean> {
    const rows = await this.db
      .update(users)
      .set({ emailVerifiedAt: sql`coalesce(${users.emailVerifiedAt}, now())`, updatedAt: new Date() })
      .where(and(eq(users.id, userId), eq(users.email, email)))
      .returning({ id: users.id });
    return rows.length > 0;
  }

  // ---- refresh tokens -------------------------------------------------------------------

  async insertRefreshToken(input: {
    userId: string;
    familyId: string;
    tokenHash: string;
    expiresAt: Date;
  }): Promise<void> {
    await this.db.insert(refreshTokens).values(input);
  }

  /**
   * Spends a refresh token and stores its successor in one transaction. The conditional UPDATE
   * makes concurrent use of one token succeed at most once. A token that exists but was already
   * spent is reuse: the caller revokes the family.
   */
  async rotateRefreshToken(tokenHash: string, next: { tokenHash: string; expiresAt: Date }): Promise<RotateResult> {
    return this.db.transaction(async (tx) => {
      const [spent] = await tx
        .update(refreshTokens)
        .set({ usedAt: new Date() })
        .where(
          and(
            eq(refreshTokens.tokenHash, tokenHash),
            isNull(refreshTokens.usedAt),
            isNull(refreshTokens.revokedAt),
            gt(refreshTokens.expiresAt, new Date()),
          ),
        )
        .returning();
      if (spent === undefined) {
        const [found] = await tx.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, tokenHash)).limit(1);
        if (found !== undefined && found.usedAt !== null) {
          return { kind: "reused", familyId: found.familyId, userId: found.userId } as const;
        }
        return { kind: "invalid" } as const;
      }
      await tx.insert(refreshTokens).values({
        userId: spent.userId,
        familyId: spent.familyId,
        tokenHash: next.tokenHash,
        expiresAt: next.expiresAt,
      });
      return { kind: "ok", previous: spent } as const;
    });
  }

  /**
   * The suspension of the customer owning a refresh token that could still be spent (unused,
   * not revoked, not expired); null when active or when the token is not usable. Read before
   * rotating, so a refused refresh does not spend the token (spending it would make its next
   * use look like theft and revoke the session).
   */
  async refreshTokenSuspension(tokenHash: string): Promise<{ at: Date; reason: string } | null> {
    const rows = await this.db
      .select({ at: customers.suspendedAt, reason: customers.suspendedReason })
      .from(refreshTokens)
      .innerJoin(users, eq(users.id, refreshTokens.userId))
      .innerJoin(customers, eq(customers.id, users.customerId))
      .where(
        and(
          eq(refreshTokens.tokenHash, tokenHash),
          isNull(refreshTokens.usedAt),
          isNull(refreshTokens.revokedAt),
          gt(refreshTokens.expiresAt, new Date()),
        ),
      )
      .limit(1);
    const row = rows[0];
    return row === undefined || row.at === null ? null : { at: row.at, reason: row.reason ?? "" };
  }

  async revokeFamily(familyId: string): Promise<number> {
    const rows = await this.db
      .update(refreshTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)))
      .returning({ id: refreshTokens.id });
    return rows.length;
  }

  async revokeAllRefreshTokens(userId: string): Promise<number> {
    const rows = await this.db
      .update(refreshTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt)))
      .returning({ id: refreshTokens.id });
    return rows.length;
  }

  /** Deletes refresh tokens past expiry and email tokens past expiry or used; periodic. */
  async sweepExpired(): Promise<number> {
    const now = new Date();
    const a = await this.db
      .delete(refreshTokens)
      .where(lt(refreshTokens.expiresAt, now))
      .returning({ id: refreshTokens.id });
    const b = await this.db
      .delete(emailTokens)
      .where(or(lt(emailTokens.expiresAt, now), sql`${emailTokens.usedAt} is not null`))
      .returning({ id: emailTokens.id });
    return a.length + b.length;
  }

  // ---- email tokens ---------------------------------------------------------------------

  async insertEmailToken(input: {
    userId: string;
    purpose: EmailTokenPurpose;
    tokenHash: string;
    email: string;
    expiresAt: Date;
  }): Promise<void> {
    await this.db.insert(emailTokens).values(input);
  }

  /** Marks the token used and returns it, once; undefined when unknown, used, expired or of another purpose. */
  async consumeEmailToken(tokenHash: string, purpose: EmailTokenPurpose): Promise<EmailTokenRow | undefined> {
    const rows = await this.db
      .update(emailTokens)
      .set({ usedAt: new Date() })
      .where(
        and(
          eq(emailTokens.tokenHash, tokenHash),
          eq(emailTokens.purpose, purpose),
          isNull(emailTokens.usedAt),
          gt(emailTokens.expiresAt, new Date()),
        ),
      )
      .returning();
    return rows[0];
  }

  /** Spends every outstanding token of that purpose (after a reset, older reset links die). */
  async invalidateEmailTokens(userId: string, purpose: EmailTokenPurpose): Promise<void> {
    await this.db
      .update(emailTokens)
      .set({ usedAt: new Date() })
      .where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt)));
  }

  // ---- deletion -------------------------------------------------------------------------

  /** Members of the customer other than this user. */
  async otherMembers(tx: Db, customerId: string, userId: string): Promise<number> {
    const rows = await tx
      .select({ n: sql<number>`count(*)::int` })
      .from(users)
      .where(and(eq(users.customerId, customerId), sql`${users.id} <> ${userId}`));
    return rows[0]?.n ?? 0;
  }

  async deleteUserRow(tx: Db, userId: string): Promise<number> {
    const rows = await tx.delete(users).where(eq(users.id, userId)).returning({ id: users.id });
    return rows.length;
  }

  async deleteCustomerRow(tx: Db, customerId: string): Promise<number> {
    const rows = await tx.delete(customers).where(eq(customers.id, customerId)).returning({ id: customers.id });
    return rows.length;
  }

  async deleteUserSessions(tx: Db, userId: string): Promise<Record<string, number>> {
    const a = await tx
      .delete(refreshTokens)
      .where(eq(refreshTokens.userId, userId))
      .returning({ id: refreshTokens.id });
    const b = await tx.delete(emailTokens).where(eq(emailTokens.userId, userId)).returning({ id: emailTokens.id });
    return { refresh_tokens: a.length, email_tokens: b.length };
  }

  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => fn(tx as unknown as Db));
  }
}
