import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";

import { listReadEntry } from "../../platform/audit.ts";
import type { AuditLogRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { type AuditFilter, type AuditRepo, InvalidAuditCursorError } from "./audit.repo.ts";
import { AdminAuditQuery, type AuditPage, AuditPageSchema, OwnAuditQuery } from "./audit.schemas.ts";

const SECURITY_ANY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });
const FILTERS =
  "Filters: `actor_user_id`, `action` (a prefix: `api_key.` is every API key action), `target_type`, " +
  "`target_id`, a time range [`from`, `to`). Newest first; `limit` 1 to 200 (default 50); pass `next_cursor` " +
  "back as `cursor`. 400 `invalid_request` for a malformed id, date or cursor, `from` not before `to`, or a " +
  "limit out of range.";

type Query = Omit<AdminAuditQuery, "customer_id"> & { readonly customer_id?: string };

function filterOf(q: Query, customerId: string | undefined): AuditFilter {
  const from = q.from === undefined ? undefined : new Date(q.from);
  const to = q.to === undefined ? undefined : new Date(q.to);
  if (from !== undefined && to !== undefined && !(from.getTime() < to.getTime())) {
    throw errors.invalidRequest([{ in: "query", path: "/from", message: "must be before to" }]);
  }
  return {
    customerId,
    actorUserId: q.actor_user_id,
    actionPrefix: q.action,
    targetType: q.target_type,
    targetId: q.target_id,
    from,
    to,
  };
}

function view(r: AuditLogRow, showIp: (r: AuditLogRow) => boolean): AuditPage["data"][number] {
  return {
    id: r.id,
    at: r.at.toISOString(),
    action: r.action,
    actor_user_id: r.actorUserId,
    actor_customer_id: r.actorCustomerId,
    actor_api_key_id: r.actorApiKeyId,
    customer_id: r.customerId,
    target_type: r.targetType,
    target_id: r.targetId,
    request_id: r.requestId,
    ip: showIp(r) ? r.ip : null,
    details: r.details,
  };
}

/** `GET /admin/audit-log` (superusers, every customer) and `GET /v1/audit-log` (the caller's customer). */
export function auditRoutes(repo: AuditRepo): FastifyPluginAsyncTypebox<ModuleOptions> {
  return async (app, { platform }) => {
    const tags = ["audit"];
    const page = async (filter: AuditFilter, q: Query) => {
      try {
        return await repo.list(filter, { limit: q.limit, cursor: q.cursor });
      } catch (e) {
        if (e instanceof InvalidAuditCursorError) {
          throw errors.invalidRequest([{ in: "query", path: "/cursor", message: "is not a cursor from this API" }]);
        }
        throw e;
      }
    };

    app.get(
      "/admin/audit-log",
      {
        onRequest: platform.auth.require({ superuser: true }),
        schema: {
          tags,
          summary: "The audit log of every customer (superusers)",
          description:
            "Every audit entry: superuser reads of a customer's data and changes of keys, safety profiles, tiers, " +
            "billing settings and consent, with actor, target, request id and client IP; never a secret or " +
            "content. `customer_id` keeps the entries about that customer or acted by one of its users or keys. " +
            `${FILTERS} Superusers only (403 \`forbidden\`); the read itself is audited (\`audit_log.read\`).`,
          security: SECURITY_JWT,
          querystring: AdminAuditQuery,
          response: { 200: AuditPageSchema, 403: PROBLEM("forbidden: not a superuser.") },
        },
      },
      async (request) => {
        const q = request.query;
        const result = await page(filterOf(q, q.customer_id), q);
        await platform.audit.recordSuperuserRead(
          request,
          listReadEntry("audit_log.read", "audit_log", q, result.items.length),
        );
        return { data: result.items.map((r) => view(r, () => true)), next_cursor: result.nextCursor };
      },
    );

    app.get(
      "/v1/audit-log",
      {
        onRequest: platform.auth.require({ scopes: ["admin"] }),
        schema: {
          tags,
          summary: "Your customer's audit log",
          description:
            "The audit entries about the caller's customer or acted by one of its users or keys: key, safety " +
            "profile, billing settings and consent changes, tier changes, and every read of its data by the " +
            `service's operators (superusers). Another customer's entries are never shown. ${FILTERS} ` +
            "Needs the account owner or an `admin` key.",
          security: SECURITY_ANY,
          querystring: OwnAuditQuery,
          response: { 200: AuditPageSchema },
        },
      },
      async (request) => {
        const customerId = (request.principal as NonNullable<typeof request.principal>).customerId;
        const q = request.query;
        const result = await page(filterOf(q, customerId), q);
        // An operator's address is not the customer's to see.
        const own = (r: AuditLogRow) => r.actorCustomerId === customerId;
        return { data: result.items.map((r) => view(r, own)), next_cursor: result.nextCursor };
      },
    );
  };
}
