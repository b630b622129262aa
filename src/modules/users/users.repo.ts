import { eq, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { type CustomerRow, customers, type UserRow, users } from "../../platform/db/schema/index.ts";

/** Emails are compared and stored trimmed and lower-cased. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export interface NewAccount {
  readonly email: string;
  readonly passwordHash: string;
  readonly fullName?: string | null;
  readonly company?: string | null;
  readonly isSuperuser?: boolean;
  readonly tier?: CustomerRow["tier"];
}

export class UsersRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  async findByEmail(email: string): Promise<UserRow | undefined> {
    const rows = await this.db
      .select()
      .from(users)
      .where(eq(sql`lower(${users.email})`, normalizeEmail(email)))
      .limit(1);
    return rows[0];
  }

  async findById(id: string): Promise<UserRow | undefined> {
    const rows = await this.db.select().from(users).where(eq(users.id, id)).limit(1);
    return rows[0];
  }

  /**
   * Creates a customer account and its owner in one transaction. Returns undefined when the
   * email is taken (unique index), so callers need no racy existence check first.
   */
  async createAccount(input: NewAccount): Promise<{ user: UserRow; customer: CustomerRow } | undefined> {
    const email = normalizeEmail(input.email);
    try {
      return await this.db.transaction(async (tx) => {
        const [customer] = await tx
          .insert(customers)
          .values({
            name: input.company ?? input.fullName ?? email,
            email,
            company: input.company ?? null,
            tier: input.tier ?? "free",
          })
          .returning();
        if (customer === undefined) throw new Error("customer insert returned nothing");
        const [user] = await tx
          .insert(users)
          .values({
            customerId: customer.id,
            role: "owner",
            email,
            passwordHash: input.passwordHash,
            fullName: input.fullName ?? null,
            isSuperuser: input.isSuperuser ?? false,
          })
          .returning();
        if (user === undefined) throw new Error("user insert returned nothing");
        return { user, customer };
      });
    } catch (e) {
      if (isUniqueViolation(e)) return undefined;
      throw e;
    }
  }

  async setSuperuser(userId: string, passwordHash: string): Promise<void> {
    await this.db
      .update(users)
      .set({ isSuperuser: true, passwordHash, tokenVersion: sql`${users.tokenVersion} + 1`, updatedAt: new Date() })
      .where(eq(users.id, userId));
  }
}

/** PostgreSQL unique_violation, from pg or PGlite, possibly wrapped by Drizzle. */
export function isUniqueViolation(e: unknown): boolean {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (typeof cur === "object" && "code" in cur && (cur as { code: unknown }).code === "23505") return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}
