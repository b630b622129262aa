import type { FastifyRequest } from "fastify";
import type { Db } from "./db/client.ts";
import { auditLog } from "./db/schema/index.ts";

/**
 * The audit log (table `audit_log`, append-only): who did what to which customer's data, when,
 * from where. An entry holds ids, action names, changed field NAMES and non-secret values such
 * as tier names: never a secret (an API key, a password, a token) and never content (an
 * instruction, an image, a profile's numbers). docs/privacy.md, "Audit log".
 *
 * Actions are dotted verbs on a resource (`api_key.create`, `customer.tier_change`); a
 * superuser's read of another customer's data is `<resource>.read` with `details.superuser`.
 */
export interface AuditActor {
  readonly actorUserId: string | null;
  readonly actorCustomerId: string | null;
  readonly actorApiKeyId: string | null;
  readonly requestId: string | null;
  readonly ip: string | null;
}

export interface AuditEntry extends Partial<AuditActor> {
  readonly action: string;
  readonly targetType: string;
  readonly targetId?: string | null;
  /** The customer the entry is about: whose data was read or changed (null: server-wide). */
  readonly customerId: string | null;
  readonly details?: Record<string, unknown>;
}

/** No actor: a job or Stripe's webhook acted (say which in `details.source`). */
export const SYSTEM_ACTOR: AuditActor = Object.freeze({
  actorUserId: null,
  actorCustomerId: null,
  actorApiKeyId: null,
  requestId: null,
  ip: null,
});

/** The actor of an HTTP request: its principal (when authenticated), request id and client IP. */
export function auditActor(request: FastifyRequest): AuditActor {
  const p = request.principal;
  return {
    actorUserId: p?.userId ?? null,
    actorCustomerId: p?.customerId ?? null,
    actorApiKeyId: p?.apiKeyId ?? null,
    requestId: request.id,
    ip: request.ip ?? null,
  };
}

/**
 * Writes one entry. Pass the open transaction when the change it records is made in one, so the
 * entry and the change commit (or roll back) together.
 */
export async function recordAudit(db: Db, entry: AuditEntry): Promise<void> {
  await db.insert(auditLog).values({
    actorUserId: entry.actorUserId ?? null,
    actorCustomerId: entry.actorCustomerId ?? null,
    actorApiKeyId: entry.actorApiKeyId ?? null,
    customerId: entry.customerId,
    action: entry.action,
    targetType: entry.targetType,
    targetId: entry.targetId ?? null,
    requestId: entry.requestId ?? null,
    ip: entry.ip ?? null,
    details: entry.details ?? {},
  });
}

/**
 * The entry for `recordSuperuserRead` of a filtered, paged list (`/admin/audit-log`,
 * `/admin/safety/incidents`): about `query.customer_id`'s data (every customer's without it), with
 * the names of the filters given (sorted; never their values, nor the paging `limit` and `cursor`)
 * and how many entries the page returned.
 */
export function listReadEntry(
  action: string,
  targetType: string,
  query: { readonly customer_id?: string | undefined },
  entries: number,
): AuditEntry {
  return {
    action,
    targetType,
    targetId: null,
    customerId: query.customer_id ?? null,
    details: {
      filters: Object.keys(query)
        .filter((k) => k !== "limit" && k !== "cursor")
        .sort(),
      entries,
    },
  };
}

/** What modules get as `platform.audit`. */
export interface AuditLog {
  /** An entry for a job or webhook (no request), or with an actor the caller assembled. */
  record(entry: AuditEntry, db?: Db): Promise<void>;
  /** An entry acted by this request's principal, with its request id and client IP. */
  recordRequest(request: FastifyRequest, entry: AuditEntry, db?: Db): Promise<void>;
  /**
   * A read of `customerId`'s data: recorded when a superuser reads another customer's (or every
   * customer's, `customerId` null) data; a no-op otherwise (reading one's own data is not audited).
   */
  recordSuperuserRead(request: FastifyRequest, entry: Omit<AuditEntry, "action"> & { action?: string }): Promise<void>;
}

export function createAuditLog(db: Db): AuditLog {
  return {
    record: (entry, tx) => recordAudit(tx ?? db, entry),
    recordRequest: (request, entry, tx) => recordAudit(tx ?? db, { ...auditActor(request), ...entry }),
    async recordSuperuserRead(request, entry) {
      const p = request.principal;
      if (p === null || !p.isSuperuser || entry.customerId === p.customerId) return;
      await recordAudit(db, {
        ...auditActor(request),
        ...entry,
        action: entry.action ?? `${entry.targetType}.read`,
        details: { ...entry.details, superuser: true },
      });
    },
  };
}
