import { and, desc, eq, gte, lt, or, type SQL, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { isStorableInstant } from "../../platform/db/instants.ts";
import { type AuditLogRow, auditLog } from "../../platform/db/schema/index.ts";

export interface AuditFilter {
  /** Entries about this customer or acted by one of its users or keys. */
  readonly customerId?: string | undefined;
  readonly actorUserId?: string | undefined;
  /** `api_key.` matches every API key action; `api_key.create` that one. */
  readonly actionPrefix?: string | undefined;
  readonly targetType?: string | undefined;
  readonly targetId?: string | undefined;
  /** [from, to) */
  readonly from?: Date | undefined;
  readonly to?: Date | undefined;
}

export interface AuditPage {
  readonly items: AuditLogRow[];
  readonly nextCursor: string | null;
}

export class InvalidAuditCursorError extends Error {
  constructor() {
    super("invalid cursor");
    this.name = "InvalidAuditCursorError";
  }
}

/** Opaque cursor: base64url of "<at ISO>|<id>" of a page's last entry (newest first; `at` has ms precision). */
export function encodeCursor(at: Date, id: string): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString("base64url");
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  const raw = Buffer.from(cursor, "base64url").toString("utf8");
  const sep = raw.indexOf("|");
  const at = new Date(raw.slice(0, sep));
  const id = raw.slice(sep + 1);
  if (
    sep < 0 ||
    !isStorableInstant(at.getTime()) ||
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
  )
    throw new InvalidAuditCursorError();
  return { at, id };
}

/** Reads of the audit log (writes go through platform/audit.ts). */
export class AuditRepo {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  /** Newest first. Throws InvalidAuditCursorError on a malformed cursor. */
  async list(
    filter: AuditFilter,
    page: { readonly limit: number; readonly cursor?: string | undefined },
  ): Promise<AuditPage> {
    const conds: (SQL | undefined)[] = [];
    const f = filter;
    if (f.customerId !== undefined)
      conds.push(or(eq(auditLog.customerId, f.customerId), eq(auditLog.actorCustomerId, f.customerId)));
    if (f.actorUserId !== undefined) conds.push(eq(auditLog.actorUserId, f.actorUserId));
    if (f.actionPrefix !== undefined) conds.push(sql`starts_with(${auditLog.action}, ${f.actionPrefix})`);
    if (f.targetType !== undefined) conds.push(eq(auditLog.targetType, f.targetType));
    if (f.targetId !== undefined) conds.push(eq(auditLog.targetId, f.targetId));
    if (f.from !== undefined) conds.push(gte(auditLog.at, f.from));
    if (f.to !== undefined) conds.push(lt(auditLog.at, f.to));
    if (page.cursor !== undefined) {
      const c = decodeCursor(page.cursor);
      conds.push(or(lt(auditLog.at, c.at), and(eq(auditLog.at, c.at), lt(auditLog.id, c.id))));
    }
    const rows = await this.db
      .select()
      .from(auditLog)
      .where(and(...conds))
      .orderBy(desc(auditLog.at), desc(auditLog.id))
      .limit(page.limit + 1);
    const items = rows.slice(0, page.limit);
    const last = items[items.length - 1];
    return {
      items,
      nextCursor: rows.length > page.limit && last !== undefined ? encodeCursor(last.at, last.id) : null,
    };
  }
}
