import { and, asc, count, eq, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { type CustomerModelRow, customerModels, customers } from "../../platform/db/schema/index.ts";

export type InsertOutcome =
  | { readonly kind: "created"; readonly row: CustomerModelRow }
  | { readonly kind: "taken" }
  | { readonly kind: "limit" };

/** Data access for customer-registered models (customer_models); framework-free. */
export class CustomerModelsRepo {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  async list(customerId: string): Promise<CustomerModelRow[]> {
    return this.db
      .select()
      .from(customerModels)
      .where(eq(customerModels.customerId, customerId))
      .orderBy(asc(customerModels.id));
  }

  /** Every customer's models (an instance loads them all at startup and after a missed broadcast). */
  async all(): Promise<CustomerModelRow[]> {
    return this.db.select().from(customerModels).orderBy(asc(customerModels.customerId), asc(customerModels.id));
  }

  async get(customerId: string, id: string): Promise<CustomerModelRow | undefined> {
    const [row] = await this.db
      .select()
      .from(customerModels)
      .where(and(eq(customerModels.customerId, customerId), eq(customerModels.id, id)));
    return row;
  }

  /**
   * Inserts unless the id is taken or the customer already has `limit` models. The customer's row
   * is locked for the transaction, so two concurrent registrations cannot both pass the count.
   */
  async insert(
    customerId: string,
    id: string,
    definition: Record<string, unknown>,
    limit: number,
  ): Promise<InsertOutcome> {
    return this.db.transaction(async (txRaw) => {
      const tx = txRaw as unknown as Db;
      await tx.select({ id: customers.id }).from(customers).where(eq(customers.id, customerId)).for("update");
      const [n] = await tx.select({ n: count() }).from(customerModels).where(eq(customerModels.customerId, customerId));
      if ((n?.n ?? 0) >= limit) return { kind: "limit" } as const;
      const [row] = await tx
        .insert(customerModels)
        .values({ customerId, id, definition })
        .onConflictDoNothing()
        .returning();
      return row === undefined ? ({ kind: "taken" } as const) : ({ kind: "created", row } as const);
    });
  }

  /** Replaces the document of an existing model; undefined when the customer has none of that id. */
  async replace(
    customerId: string,
    id: string,
    definition: Record<string, unknown>,
  ): Promise<CustomerModelRow | undefined> {
    const [row] = await this.db
      .update(customerModels)
      .set({ definition, updatedAt: sql`clock_timestamp()` })
      .where(and(eq(customerModels.customerId, customerId), eq(customerModels.id, id)))
      .returning();
    return row;
  }

  async delete(customerId: string, id: string): Promise<boolean> {
    const rows = await this.db
      .delete(customerModels)
      .where(and(eq(customerModels.customerId, customerId), eq(customerModels.id, id)))
      .returning({ id: customerModels.id });
    return rows.length > 0;
  }

  async deleteCustomer(customerId: string): Promise<number> {
    const rows = await this.db
      .delete(customerModels)
      .where(eq(customerModels.customerId, customerId))
      .returning({ id: customerModels.id });
    return rows.length;
  }
}
