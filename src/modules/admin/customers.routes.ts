import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { auditActor } from "../../platform/audit.ts";
import type { CustomerRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { consentServices } from "../consent/consent.module.ts";
import type { ConsentView } from "../consent/consent.service.ts";
import type { EstopRecord } from "../safety/estop.ts";
import { safetyServices } from "../safety/safety.module.ts";
import { type AdminCustomersRepo, type CustomerSummary, InvalidCustomerCursorError } from "./customers.repo.ts";
import {
  type CustomerDetailJson,
  CustomerDetailSchema,
  CustomerListQuery,
  CustomerListSchema,
  CustomerParams,
  type CustomerSummaryJson,
  LimitsBody,
  LimitsChangeSchema,
  TierBody,
  TierChangeSchema,
} from "./customers.schemas.ts";
import { type AdminCustomersService, limitsView } from "./customers.service.ts";

const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });
const FORBIDDEN = PROBLEM("forbidden: not a superuser (a customer's `admin` key is not one either).");
const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function summaryJson(s: CustomerSummary): CustomerSummaryJson {
  return {
    id: s.id,
    name: s.name,
    email: s.email,
    company: s.company,
    tier: s.tier,
    created_at: s.createdAt.toISOString(),
    status: s.suspendedAt === null ? "active" : "suspended",
    suspended: s.suspendedAt === null ? null : { at: s.suspendedAt.toISOString(), reason: s.suspendedReason },
    subscription_status: s.subscriptionStatus,
    mrr: s.mrrMinor,
    currency: s.subscriptionCurrency,
    members: s.members,
    active_keys: s.activeKeys,
    requests_this_month: s.requestsThisMonth,
    requests_30d: s.requests30d,
    last_activity_at: iso(s.lastActivityAt),
  };
}

function keyStatus(k: { revokedAt: Date | null; expiresAt: Date | null }, now: number) {
  if (k.revokedAt !== null && k.revokedAt.getTime() <= now) return "revoked" as const;
  if (k.expiresAt !== null && k.expiresAt.getTime() <= now) return "expired" as const;
  return "active" as const;
}

export interface DetailSources {
  readonly now: () => number;
  /** The safety module's emergency stops (absent in the CLI, which reports none it cannot see). */
  readonly stoppedRobots?: (customerId: string) => Promise<ReadonlyMap<string, EstopRecord>>;
  /** The consent module's current record. */
  readonly consent?: (customerId: string) => Promise<ConsentView>;
}

/** Everything `GET /admin/customers/{id}` and `customers show` report about one customer. */
export async function customerDetail(
  repo: AdminCustomersRepo,
  src: DetailSources,
  customerId: string,
): Promise<CustomerDetailJson | undefined> {
  const now = new Date(src.now());
  const [summary] = await repo.summaries([customerId], now);
  const row = await repo.customer(customerId);
  if (summary === undefined || row === undefined) return undefined;
  const [members, keys, usage, incidents, stops, consent] = await Promise.all([
    repo.members(customerId),
    repo.keys(customerId),
    repo.usage(customerId, now),
    repo.incidentCounts(customerId),
    src.stoppedRobots?.(customerId) ?? Promise.resolve(new Map<string, EstopRecord>()),
    src.consent?.(customerId),
  ]);
  return {
    customer: {
      ...summaryJson(summary),
      updated_at: row.updatedAt.toISOString(),
      stripe_customer_id: row.stripeCustomerId,
    },
    members: members.map((m) => ({
      id: m.id,
      email: m.email,
      full_name: m.fullName,
      role: m.role,
      is_superuser: m.isSuperuser,
      is_active: m.isActive,
      email_verified_at: iso(m.emailVerifiedAt),
      last_login_at: iso(m.lastLoginAt),
      created_at: m.createdAt.toISOString(),
    })),
    keys: keys.map((k) => ({
      id: k.id,
      name: k.name,
      prefix: k.displayPrefix,
      scopes: k.scopes,
      robot_id: k.robotId,
      status: keyStatus(k, now.getTime()),
      expires_at: iso(k.expiresAt),
      revoked_at: iso(k.revokedAt),
      last_used_at: iso(k.lastUsedAt),
      created_at: k.createdAt.toISOString(),
    })),
    limits: limitsView(row),
    usage: {
      today: usage.today,
      month: { requests: usage.month.requests, stream_seconds: usage.month.streamSeconds },
      last_30_days: usage.last30,
    },
    subscription: subscriptionJson(row),
    invoices: {
      past_due: row.subscriptionStatus === "past_due" || row.subscriptionStatus === "unpaid",
      latest_synced_at: iso(row.subscriptionSyncedAt),
    },
    emergency_stops: [...stops.entries()].map(([robotId, rec]) => ({
      robot_id: robotId,
      at: rec.at,
      reason: rec.reason,
      inference_id: rec.inferenceId ?? null,
    })),
    incidents_by_severity: incidents,
    consent: {
      state: consent?.effective.state ?? "default",
      tier: consent?.effective.tier ?? "none",
      version: consent?.record?.version ?? null,
      policy_version: consent?.record?.policyVersion ?? null,
      granted_at: iso(consent?.record?.grantedAt ?? null),
      expires_at: iso(consent?.record?.expiresAt ?? null),
      withdrawn: consent?.record?.withdrawn ?? false,
    },
  };
}

function subscriptionJson(row: CustomerRow) {
  return {
    status: row.subscriptionStatus,
    price_id: row.stripePriceId,
    mrr: Number(row.mrrMinor),
    currency: row.subscriptionCurrency,
    interval: row.subscriptionInterval,
    current_period_end: iso(row.currentPeriodEnd),
    cancel_at_period_end: row.cancelAtPeriodEnd,
    grace_until: iso(row.graceUntil),
    synced_at: iso(row.subscriptionSyncedAt),
  };
}

/** `/admin/customers`: the operators' view of every customer, and tier and limit changes. Superusers only. */
export function adminCustomersRoutes(
  repo: AdminCustomersRepo,
  service: AdminCustomersService,
  /** The list's repo (read replica when configured); details and changes use `repo` (primary). */
  listRepo: AdminCustomersRepo = repo,
): FastifyPluginAsyncTypebox<ModuleOptions> {
  return async (app, { platform }) => {
    const tags = ["admin"];
    const superuser = platform.auth.require({ superuser: true });
    // Registered after the safety and consent modules (src/modules/index.ts).
    const safety = safetyServices.get(platform);
    const consent = consentServices.get(platform);
    const sources: DetailSources = {
      now: platform.now,
      ...(safety === undefined ? {} : { stoppedRobots: (id: string) => safety.stoppedRobots(id) }),
      ...(consent === undefined ? {} : { consent: (id: string) => consent.view(id) }),
    };

    app.get(
      "/admin/customers",
      {
        onRequest: superuser,
        schema: {
          tags,
          summary: "List customers (superusers)",
          description:
            "Every customer with tier, members, active keys, requests this month and over the last 30 days, last " +
            "activity, subscription status, MRR and suspension. Filters: `q` (case-insensitive substring of email, " +
            "name or company), `tier`, `status`. Sorted by `sort` (`created_at`, `requests_30d`, `mrr`) and " +
            "`order`, ties broken by id; keyset pages of `limit` (1 to 100) with an opaque `next_cursor`, valid " +
            "for the same sort and order only. 400 `invalid_request` for an unknown parameter, sort, tier or " +
            "status, a limit out of range or a malformed cursor. Superusers only (403 `forbidden`).",
          security: SECURITY_JWT,
          querystring: CustomerListQuery,
          response: {
            200: CustomerListSchema,
            400: PROBLEM("invalid_request: a bad parameter or cursor."),
            403: FORBIDDEN,
          },
        },
      },
      async (request) => {
        const q = request.query;
        try {
          const page = await listRepo.list(
            { q: q.q, tier: q.tier, status: q.status },
            { sort: q.sort, order: q.order, limit: q.limit, cursor: q.cursor },
            new Date(platform.now()),
          );
          return { data: page.items.map(summaryJson), next_cursor: page.nextCursor };
        } catch (e) {
          if (e instanceof InvalidCustomerCursorError) {
            throw errors.invalidRequest([
              { in: "query", path: "/cursor", message: "is not a cursor of this list with this sort and order" },
            ]);
          }
          throw e;
        }
      },
    );

    app.get(
      "/admin/customers/:customer_id",
      {
        onRequest: superuser,
        schema: {
          tags,
          summary: "One customer in full (superusers)",
          description:
            "The customer, its members (never password data), keys (metadata, never the key or its hash), limits " +
            "(tier defaults, overrides, effective), usage from the analytics rollups (today, this month, the last " +
            "30 UTC days), subscription and invoice state as stored (never a Stripe call), open emergency stops, " +
            "safety incidents by severity and the consent that applies. The read is audited " +
            "(`customer.read`). 404 `not_found` for an unknown customer.",
          security: SECURITY_JWT,
          params: CustomerParams,
          response: {
            200: CustomerDetailSchema,
            400: PROBLEM("invalid_request: the id is not a UUID."),
            403: FORBIDDEN,
            404: PROBLEM("not_found: no such customer."),
          },
        },
      },
      async (request) => {
        const id = request.params.customer_id;
        const detail = await customerDetail(repo, sources, id);
        if (detail === undefined) throw errors.notFound("Customer");
        await platform.audit.recordSuperuserRead(request, {
          action: "customer.read",
          targetType: "customer",
          targetId: id,
          customerId: id,
          details: { sections: ["members", "keys", "limits", "usage", "subscription", "safety", "consent"] },
        });
        return detail;
      },
    );

    app.post(
      "/admin/customers/:customer_id/tier",
      {
        onRequest: superuser,
        schema: {
          tags,
          summary: "Change a customer's tier (superusers)",
          description:
            "Sets the tier (its default limits apply at once; overrides stay) and writes `customer.tier_change` " +
            "with the reason to the audit log in the same transaction. Every instance applies the new limits " +
            "within a second. Stripe is not told: a later subscription event sets the tier it sells again. " +
            "422 `validation_failed` for an unknown tier, a missing or empty reason or an unknown field; 400 " +
            "`invalid_request` for a malformed id; 404 `not_found` for an unknown customer.",
          security: SECURITY_JWT,
          params: CustomerParams,
          body: TierBody,
          response: {
            200: TierChangeSchema,
            400: PROBLEM("invalid_request: the id is not a UUID."),
            403: FORBIDDEN,
            404: PROBLEM("not_found: no such customer."),
            422: PROBLEM("validation_failed: the body does not match the schema."),
          },
        },
      },
      async (request) => {
        const id = request.params.customer_id;
        const r = await service.changeTier(
          auditActor(request),
          id,
          request.body.tier,
          request.body.reason,
          "admin_api",
        );
        if (r === undefined) throw errors.notFound("Customer");
        return { customer_id: id, from: r.before.tier, tier: r.after.tier, limits: limitsView(r.after) };
      },
    );

    app.patch(
      "/admin/customers/:customer_id/limits",
      {
        onRequest: superuser,
        schema: {
          tags,
          summary: "Override a customer's limits (superusers)",
          description:
            "Sets the given overrides of the tier's limits (`rate_limit_per_minute`, `quota_per_day`, " +
            "`quota_per_month`; whole numbers from 0; null resets one to the tier default; fields left out stay). " +
            "Audited (`customer.limits_change`, in the same transaction); every instance applies them within a " +
            "second. 422 `validation_failed` for an empty body, a negative or fractional value or an unknown " +
            "field; 400 `invalid_request` for a malformed id; 404 `not_found` for an unknown customer.",
          security: SECURITY_JWT,
          params: CustomerParams,
          body: LimitsBody,
          response: {
            200: LimitsChangeSchema,
            400: PROBLEM("invalid_request: the id is not a UUID."),
            403: FORBIDDEN,
            404: PROBLEM("not_found: no such customer."),
            422: PROBLEM("validation_failed: the body does not match the schema."),
          },
        },
      },
      async (request) => {
        const id = request.params.customer_id;
        const r = await service.setLimits(auditActor(request), id, request.body, "admin_api");
        if (r === undefined) throw errors.notFound("Customer");
        return { customer_id: id, tier: r.after.tier, limits: limitsView(r.after) };
      },
    );
  };
}
