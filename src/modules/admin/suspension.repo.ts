import { and, eq, isNull, ne, sql } from "drizzle-orm";
import { ADVISORY_LOCKS } from "../../platform/db/advisory-locks.ts";
import type { Db } from "../../platform/db/client.ts";
import { customers, users } from "../../platform/db/schema/index.ts";

export interface CustomerSuspensionRow {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly suspendedAt: Date | null;
  readonly suspendedReason: string | null;
}

export interface SuperuserRow {
  readonly id: string;
  readonly email: string;
  readonly customerId: string;
  readonly isSuperuser: boolean;
  readonly isActive: boolean;
}

const CUSTOMER_COLUMNS = {
  id: customers.id,
  name: customers.name,
  email: customers.email,
  suspendedAt: customers.suspendedAt,
  suspendedReason: customers.suspendedReason,
};

/** SQL of the operator's suspension and superuser changes; each runs inside the caller's transaction. */
export class SuspensionRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => fn(tx as unknown as Db));
  }

  /** The customer row, locked until the transaction ends (two operators' changes serialise). */
  async lockCustomer(tx: Db, customerId: string): Promise<CustomerSuspensionRow | undefined> {
    const rows = await tx
      .select(CUSTOMER_COLUMNS)
      .from(customers)
      .where(eq(customers.id, customerId))
      .for("update")
      .limit(1);
    return rows[0];
  }

  async setSuspension(
    tx: Db,
    customerId: string,
    suspension: { at: Date; reason: string } | null,
  ): Promise<CustomerSuspensionRow> {
    const [row] = await tx
      .update(customers)
      .set({
        suspendedAt: suspension?.at ?? null,
        suspendedReason: suspension?.reason ?? null,
        updatedAt: new Date(),
      })
      .where(eq(customers.id, customerId))
      .returning(CUSTOMER_COLUMNS);
    if (row === undefined) throw new Error("customer vanished under its row lock");
    return row;
  }

  async countMembers(tx: Db, customerId: string): Promise<number> {
    const rows = await tx.select({ n: sql<number>`count(*)::int` }).from(users).where(eq(users.customerId, customerId));
    return rows[0]?.n ?? 0;
  }

  async lockUser(tx: Db, userId: string): Promise<SuperuserRow | undefined> {
    const rows = await tx
      .select({
        id: users.id,
        email: users.email,
        customerId: users.customerId,
        isSuperuser: users.isSuperuser,
        isActive: users.isActive,
      })
      .from(users)
      .where(eq(users.id, userId))
      .for("update")
      .limit(1);
    return rows[0];
  }

  /**
   * Serialises superuser changes across instances until the transaction ends: two concurrent
   * demotions (A demotes B while B demotes A) run one after the other, and the second sees the
   * first's result, so the last superuser can never be demoted by a race. A lock on the rows
   * instead could deadlock (each transaction holds its target and waits for the other's).
   */
  async lockSuperuserChanges(tx: Db): Promise<void> {
    await tx.execute(sql`select pg_advisory_xact_lock(${ADVISORY_LOCKS.superuserChanges})`);
  }

  /** Superusers other than `userId` who can still act: active, and their customer not suspended. */
  async countOtherActiveSuperusers(tx: Db, userId: string): Promise<number> {
    const rows = await tx
      .select({ n: sql<number>`count(*)::int` })
      .from(users)
      .innerJoin(customers, eq(customers.id, users.customerId))
      .where(
        and(eq(users.isSuperuser, true), eq(users.isActive, true), ne(users.id, userId), isNull(customers.suspendedAt)),
      );
    return rows[0]?.n ?? 0;
  }

  async setSuperuser(tx: Db, userId: string, isSuperuser: boolean): Promise<void> {
    await tx.update(users).set({ isSuperuser, updatedAt: new Date() }).where(eq(users.id, userId));
  }
}
