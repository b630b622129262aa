import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import type { Principal } from "../../platform/auth.ts";
import type { ConsentRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  AtQuery,
  ConsentBody,
  type ConsentBodyType,
  ConsentHistorySchema,
  ConsentPatchBody,
  type ConsentPatchBodyType,
  ConsentVersionResponse,
  type ConsentVersionView,
  ConsentViewSchema,
  type ConsentViewType,
  CustomerParams,
  HistoryQuery,
} from "./consent.schemas.ts";
import type { ConsentActor, ConsentInput, ConsentPatch, ConsentService, ConsentView } from "./consent.service.ts";

export interface ConsentRouteOptions {
  readonly platform: Platform;
  readonly service: ConsentService;
}

const SECURITY_ANY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });
const tags = ["privacy"];

export function versionView(r: ConsentRow): ConsentVersionView {
  return {
    version: r.version,
    tier: r.tier,
    permissions: {
      store_instructions: r.storeInstructions,
      store_images: r.storeImages,
      store_embeddings: r.storeEmbeddings,
      use_for_training: r.useForTraining,
    },
    anonymization: r.anonymization,
    retention_days: r.retentionDays,
    expires_at: r.expiresAt?.toISOString() ?? null,
    granted_at: r.grantedAt.toISOString(),
    granted_by_user_id: r.grantedByUserId,
    granted_by_api_key_id: r.grantedByApiKeyId,
    ip: r.ip,
    policy_version: r.policyVersion,
    withdrawn: r.withdrawn,
  };
}

function view(customerId: string, v: ConsentView, logInstructions: boolean): ConsentViewType {
  return {
    customer_id: customerId,
    at: v.at.toISOString(),
    state: v.effective.state,
    tier: v.effective.tier,
    permissions: { ...v.effective.permissions },
    anonymization: v.effective.anonymization,
    retention_days: v.effective.retentionDays,
    instruction_text_stored: logInstructions && v.effective.permissions.store_instructions,
    record: v.record === null ? null : versionView(v.record),
  };
}

function actor(request: FastifyRequest, admin: boolean): ConsentActor {
  const p = request.principal as Principal;
  return {
    userId: p.userId,
    apiKeyId: p.apiKeyId,
    customerId: p.customerId,
    ip: request.ip,
    requestId: request.id,
    admin,
  };
}

const date = (s: string | null | undefined) => (s === undefined ? undefined : s === null ? null : new Date(s));

function input(b: ConsentBodyType): ConsentInput {
  return {
    tier: b.tier,
    permissions: b.permissions,
    anonymization: b.anonymization,
    retentionDays: b.retention_days,
    expiresAt: date(b.expires_at),
    policyVersion: b.policy_version,
  };
}

function patch(b: ConsentPatchBodyType): ConsentPatch {
  return {
    ...(b.tier === undefined ? {} : { tier: b.tier }),
    ...(b.permissions === undefined ? {} : { permissions: b.permissions }),
    ...(b.anonymization === undefined ? {} : { anonymization: b.anonymization }),
    ...(b.retention_days === undefined ? {} : { retentionDays: b.retention_days }),
    ...(b.expires_at === undefined ? {} : { expiresAt: date(b.expires_at) }),
    ...(b.policy_version === undefined ? {} : { policyVersion: b.policy_version }),
  };
}

function encodeCursor(version: number): string {
  return Buffer.from(`v${version}`, "utf8").toString("base64url");
}

function decodeCursor(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const m = /^v([1-9]\d{0,9})$/.exec(Buffer.from(s, "base64url").toString("utf8"));
  if (m === null)
    throw errors.invalidRequest([{ in: "query", path: "/cursor", message: "is not a cursor from this API" }]);
  return Number(m[1]);
}

function atInstant(at: string | undefined): Date | undefined {
  return at === undefined ? undefined : new Date(at);
}

const AT_DESCRIPTION =
  " With `?at=<date-time>` it answers what applied at that instant (the last version granted before it, judged " +
  "at it: a version that had expired by then is `expired`).";

const BODY_RULES =
  " Permissions left out follow the tier; `false` narrows it; asking for a permission the tier does not give is 422 " +
  "`validation_failed` naming the field and the lowest tier that gives it (never clamped). retention_days outside " +
  "1..3650, an unknown tier, anonymization or permission name, or an expires_at not in the future are 422. The change " +
  "applies to the next request on every instance.";

/**
 * Self-service `GET/PUT /v1/consent`, `GET /v1/consent/history` (account owner session or an
 * API key with the admin scope) and the superuser routes `/admin/consent/{customer_id}`
 * (every call audited).
 */
export const consentRoutes: FastifyPluginAsyncTypebox<ConsentRouteOptions> = async (app, { platform, service }) => {
  const owner = platform.auth.require({ scopes: ["admin"] });
  const superuser = platform.auth.require({ superuser: true });
  const logInstructions = platform.config.inference.logInstructions;

  app.get(
    "/v1/consent",
    {
      onRequest: owner,
      schema: {
        tags,
        summary: "Your data consent",
        description:
          "The consent in effect for your account: its state (default, active, expired, withdrawn), the tier and the " +
          "permissions after narrowing and expiry, and the stored version. Without any version, CONSENT_DEFAULT_TIER " +
          "applies (state `default`)." +
          AT_DESCRIPTION,
        security: SECURITY_ANY,
        querystring: AtQuery,
        response: { 200: ConsentViewSchema },
      },
    },
    async (request) => {
      const p = request.principal as Principal;
      return view(p.customerId, await service.view(p.customerId, atInstant(request.query.at)), logInstructions);
    },
  );

  app.put(
    "/v1/consent",
    {
      onRequest: owner,
      schema: {
        tags,
        summary: "Grant, change or withdraw your data consent",
        description: `Appends a new consent version (earlier ones are kept). Withdraw with \`{"tier": "none", ...}\`.${BODY_RULES}`,
        security: SECURITY_ANY,
        body: ConsentBody,
        response: {
          200: { ...ConsentViewSchema, description: "The consent now in effect (the new version)." },
          "4XX": PROBLEM("Problem: auth (401/403), invalid body (422)."),
        },
      },
    },
    async (request) => {
      const p = request.principal as Principal;
      const a = actor(request, false);
      const row = await service.grant(a, p.customerId, input(request.body));
      if (row === undefined) throw errors.notFound("Customer");
      return view(p.customerId, await service.view(p.customerId), logInstructions);
    },
  );

  app.get(
    "/v1/consent/history",
    {
      onRequest: owner,
      schema: {
        tags,
        summary: "Your consent versions",
        description:
          "Every version of your consent, newest first (`limit` default 50, max 200; pass `next_cursor` as `cursor`).",
        security: SECURITY_ANY,
        querystring: HistoryQuery,
        response: { 200: ConsentHistorySchema },
      },
    },
    async (request) => {
      const p = request.principal as Principal;
      const page = await service.history(p.customerId, decodeCursor(request.query.cursor), request.query.limit);
      return { data: page.data.map(versionView), next_cursor: page.next === null ? null : encodeCursor(page.next) };
    },
  );

  // Superusers: any customer's consent. Every call writes an audit_log row.
  const ADMIN = " Superuser only (403 otherwise); an unknown customer is 404. Every call writes an audit_log entry.";
  const found = async (customerId: string) => {
    if (!(await service.customerExists(customerId))) throw errors.notFound("Customer");
  };

  app.get(
    "/admin/consent/:customer_id",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "A customer's data consent (superuser)",
        description: `The consent in effect for the customer, as \`GET /v1/consent\` shows it.${AT_DESCRIPTION}${ADMIN}`,
        security: SECURITY_JWT,
        params: CustomerParams,
        querystring: AtQuery,
        response: { 200: ConsentViewSchema },
      },
    },
    async (request) => {
      const id = request.params.customer_id;
      await found(id);
      await service.auditRead(actor(request, true), id, "read");
      return view(id, await service.view(id, atInstant(request.query.at)), logInstructions);
    },
  );

  app.get(
    "/admin/consent/:customer_id/history",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "A customer's consent versions (superuser)",
        description: `Every version, newest first, with cursor pagination.${ADMIN}`,
        security: SECURITY_JWT,
        params: CustomerParams,
        querystring: HistoryQuery,
        response: { 200: ConsentHistorySchema },
      },
    },
    async (request) => {
      const id = request.params.customer_id;
      await found(id);
      await service.auditRead(actor(request, true), id, "read_history");
      const page = await service.history(id, decodeCursor(request.query.cursor), request.query.limit);
      return { data: page.data.map(versionView), next_cursor: page.next === null ? null : encodeCursor(page.next) };
    },
  );

  app.post(
    "/admin/consent/:customer_id",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Record a customer's consent (superuser)",
        description: `Appends a version with every field given, e.g. from a signed paper form.${BODY_RULES}${ADMIN}`,
        security: SECURITY_JWT,
        params: CustomerParams,
        body: ConsentBody,
        response: { 201: { ...ConsentVersionResponse, description: "The new version." } },
      },
    },
    async (request, reply) => {
      const row = await service.grant(actor(request, true), request.params.customer_id, input(request.body));
      if (row === undefined) throw errors.notFound("Customer");
      reply.code(201);
      return versionView(row);
    },
  );

  app.patch(
    "/admin/consent/:customer_id",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Change a customer's consent (superuser)",
        description: `Appends a version from the current one with the given fields changed.${BODY_RULES}${ADMIN}`,
        security: SECURITY_JWT,
        params: CustomerParams,
        body: ConsentPatchBody,
        response: { 200: { ...ConsentVersionResponse, description: "The new version." } },
      },
    },
    async (request) => {
      const id = request.params.customer_id;
      await found(id);
      const row = await service.change(actor(request, true), id, patch(request.body));
      if (row === undefined) throw errors.notFound("Customer");
      return versionView(row);
    },
  );

  app.delete(
    "/admin/consent/:customer_id",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Withdraw a customer's consent (superuser)",
        description:
          "Appends a withdrawal: a version with tier `none` and `withdrawn: true` (earlier versions are kept). Instruction " +
          `text stops being stored with the next request.${ADMIN}`,
        security: SECURITY_JWT,
        params: CustomerParams,
        response: { 200: { ...ConsentVersionResponse, description: "The withdrawal version." } },
      },
    },
    async (request) => {
      const row = await service.withdraw(actor(request, true), request.params.customer_id);
      if (row === undefined) throw errors.notFound("Customer");
      return versionView(row);
    },
  );
};
