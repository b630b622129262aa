import { and, desc, eq, lt, lte } from "drizzle-orm";
import { recordAudit } from "../../platform/audit.ts";
import type { Db } from "../../platform/db/client.ts";
import { type ConsentRow, customerDataConsent, customers, type NewConsentRow } from "../../platform/db/schema/index.ts";

/** A consent version to append; the version number and grant time are set by the repo. */
export type ConsentDraft = Omit<NewConsentRow, "id" | "customerId" | "version" | "grantedAt">;

/** An audit entry written in the same transaction as the change (never the content). */
export interface ConsentAuditEntry {
  readonly actorUserId: string | null;
  readonly actorCustomerId: string | null;
  readonly actorApiKeyId: string | null;
  readonly action: string;
  readonly requestId: string | null;
  readonly ip: string | null;
  readonly details: Record<string, unknown>;
}

/** Data access for customer_data_consent (append-only); framework-free. */
export class ConsentRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  async customerExists(customerId: string): Promise<boolean> {
    const [row] = await this.db
      .select({ id: customers.id })
      .from(customers)
      .where(eq(customers.id, customerId))
      .limit(1);
    return row !== undefined;
  }

  /** The last version granted at or before `at` (any time when undefined), or null. */
  async latest(customerId: string, at?: Date): Promise<ConsentRow | null> {
    const t = customerDataConsent;
    const conds = [eq(t.customerId, customerId)];
    if (at !== undefined) conds.push(lte(t.grantedAt, at));
    const [row] = await this.db
      .select()
      .from(t)
      .where(and(...conds))
      .orderBy(desc(t.version))
      .limit(1);
    return row ?? null;
  }

  /** Newest first, versions below `beforeVersion`; `limit + 1` rows so the caller sees another page. */
  async history(customerId: string, beforeVersion: number | undefined, limit: number): Promise<ConsentRow[]> {
    const t = customerDataConsent;
    const conds = [eq(t.customerId, customerId)];
    if (beforeVersion !== undefined) conds.push(lt(t.version, beforeVersion));
    return this.db
      .select()
      .from(t)
      .where(and(...conds))
      .orderBy(desc(t.version))
      .limit(limit + 1);
  }

  /**
   * Appends the next version in one transaction with its audit entry. The customer row is locked
   * first, so concurrent changes of one customer take turns (versions stay 1, 2, 3, ...) and
   * grant times never go backwards even when instances' clocks differ. Undefined: no such customer.
   */
  async append(
    customerId: string,
    now: Date,
    build: (previous: ConsentRow | null) => ConsentDraft,
    audit: ConsentAuditEntry,
  ): Promise<{ row: ConsentRow; previous: ConsentRow | null } | undefined> {
    return this.db.transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      const [customer] = await tx
        .select({ id: customers.id })
        .from(customers)
        .where(eq(customers.id, customerId))
        .for("update");
      if (customer === undefined) return undefined;
      const previous = await new ConsentRepo(tx).latest(customerId);
      const grantedAt = previous !== null && previous.grantedAt.getTime() > now.getTime() ? previous.grantedAt : now;
      const [row] = await tx
        .insert(customerDataConsent)
        .values({ ...build(previous), customerId, version: (previous?.version ?? 0) + 1, grantedAt })
        .returning();
      if (row === undefined) throw new Error("consent insert returned no row");
      await recordAudit(tx, {
        ...audit,
        customerId,
        targetType: "customer",
        targetId: customerId,
        details: { ...audit.details, version: row.version },
      });
      return { row, previous };
    });
  }

  /** An audit entry on its own (superuser reads). */
  async audit(customerId: string, entry: ConsentAuditEntry): Promise<void> {
    await recordAudit(this.db, { ...entry, customerId, targetType: "customer", targetId: customerId });
  }

  async deleteCustomer(customerId: string): Promise<number> {
    const rows = await this.db
      .delete(customerDataConsent)
      .where(eq(customerDataConsent.customerId, customerId))
      .returning({ id: customerDataConsent.id });
    return rows.length;
  }
}
