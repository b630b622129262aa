import { randomUUID } from "node:crypto";
import { desc, eq } from "drizzle-orm";
import type { App } from "../../src/app.ts";
import type { Principal } from "../../src/platform/auth.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { auditLog, contextMetadata, inferenceLogs } from "../../src/platform/db/schema/index.ts";
import { errors } from "../../src/platform/errors.ts";

export { owner, xKey } from "../helpers/limits.ts";

/** The id of the superuser the `super:` test session stands for (the audit actor). */
export const SUPERUSER_ID = randomUUID();

/**
 * Test sessions as in helpers/limits.ts (`Bearer owner:<customerId>`, an account owner), plus
 * `Bearer super:<customerId>`: a superuser of that customer, and `Bearer member:<customerId>`:
 * a member (inference scope only).
 */
export function installConsentSessions(app: App): void {
  app.platform.auth.useJwt({
    async verify(credential) {
      if (credential.kind !== "jwt") throw errors.invalidToken();
      const m = /^(owner|super|member):([0-9a-f-]{36})$/.exec(credential.token);
      if (m === null) throw errors.invalidToken();
      const role = m[1] as string;
      const principal: Principal = {
        kind: "user",
        customerId: m[2] as string,
        userId: role === "super" ? SUPERUSER_ID : null,
        apiKeyId: null,
        scopes: role === "member" ? ["inference"] : ["inference", "admin"],
        isSuperuser: role === "super",
        tier: "free",
      };
      return principal;
    },
  });
}

export const superuser = (customerId: string) => ({ authorization: `Bearer super:${customerId}` });
export const member = (customerId: string) => ({ authorization: `Bearer member:${customerId}` });

export async function auditRows(database: Database, customerId: string) {
  return database.db.select().from(auditLog).where(eq(auditLog.targetId, customerId)).orderBy(desc(auditLog.at));
}

export async function storedInstructions(database: Database, customerId: string) {
  return database.db
    .select({
      instruction: inferenceLogs.instruction,
      sha: inferenceLogs.instructionSha256,
      source: inferenceLogs.source,
      status: inferenceLogs.status,
    })
    .from(inferenceLogs)
    .where(eq(inferenceLogs.customerId, customerId));
}

export async function storedContext(database: Database, customerId: string) {
  return database.db.select().from(contextMetadata).where(eq(contextMetadata.customerId, customerId));
}

/** Every object key under the customer's image prefix. */
export async function storedObjects(app: App, customerId: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of app.platform.objectStore.list(`images/${customerId}/`)) keys.push(k);
  return keys.sort();
}
