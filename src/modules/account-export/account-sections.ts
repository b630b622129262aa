import { asc, eq } from "drizzle-orm";
import { customers, users } from "../../platform/db/schema/index.ts";
import { type ExportSection, exportRow } from "../../platform/exports.ts";

/** Never exported: credentials and session machinery. */
export const USER_SECRET_FIELDS = ["passwordHash", "tokenVersion"] as const;

/** The account's own rows: the customer (profile) and its users (members). */
export const accountSections: readonly ExportSection[] = [
  {
    name: "profile",
    file: "profile.ndjson",
    // Stripe ids are identifiers, not secrets (the Stripe key never lives in this table).
    async *rows(customerId, db) {
      const rows = await db.select().from(customers).where(eq(customers.id, customerId));
      for (const row of rows) yield exportRow(row);
    },
  },
  {
    name: "members",
    file: "members.ndjson",
    async *rows(customerId, db) {
      const rows = await db.select().from(users).where(eq(users.customerId, customerId)).orderBy(asc(users.createdAt));
      for (const row of rows) yield exportRow(row, USER_SECRET_FIELDS);
    },
  },
];
