import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import { auditActor } from "../../platform/audit.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  CustomerParams,
  SuperuserBody,
  SuperuserSchema,
  SuspendBody,
  SuspensionSchema,
  UnsuspendBody,
  UserParams,
} from "./suspension.schemas.ts";
import type { Actor, SuspensionService } from "./suspension.service.ts";

export interface SuspensionRouteOptions {
  readonly platform: Platform;
  readonly service: SuspensionService;
}

const SECURITY_JWT: Record<string, string[]>[] = [{ bearerAuth: [] }];
const tags = ["admin"];
const problem = (description: string) => ({ $ref: "Problem#", description });
const AUTH_PROBLEMS = {
  401: problem("unauthorized / invalid_token: no or a bad session."),
  403: problem("forbidden: not a superuser (a customer's owner session or `admin`-scope key is not one)."),
  422: problem("validation_failed: malformed body (missing or too long reason, wrong type, unknown field)."),
};
const SUPERUSER_ONLY = " Superuser only (403 otherwise). The change and its audit_log entry commit together.";

const actor = (request: FastifyRequest): Actor => ({ ...auditActor(request), source: "api" });

/** `POST /admin/customers/{id}/suspend|unsuspend` and `POST /admin/users/{id}/superuser` (docs/admin.md). */
export const suspensionRoutes: FastifyPluginAsyncTypebox<SuspensionRouteOptions> = async (
  app,
  { platform, service },
) => {
  const superuser = platform.auth.require({ superuser: true });

  app.post(
    "/admin/customers/:customer_id/suspend",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Suspend a customer",
        description:
          "Sets `suspended_at` and the reason. At once, on every instance: the customer's API keys answer 403 " +
          "`customer_suspended` (problem+json with `suspended_at` and `suspended_reason`), its members' access and " +
          "refresh tokens answer the same, their sign-in answers it after a correct password, and open streams " +
          "(`/v1/stream`, openpi) close with code 4403. Nothing of a suspended customer is metered. Keys, sessions and " +
          "data are kept: unsuspending restores everything. Already suspended: 409 `already_suspended` (nothing " +
          "changes; unsuspend first to record a new reason). Your own customer: 409 `conflict`. Unknown customer: 404." +
          SUPERUSER_ONLY,
        security: SECURITY_JWT,
        params: CustomerParams,
        body: SuspendBody,
        response: {
          200: { ...SuspensionSchema, description: "The customer, now suspended." },
          ...AUTH_PROBLEMS,
          404: problem("not_found: no such customer."),
          409: problem("already_suspended, or conflict: the caller's own customer."),
        },
      },
    },
    async (request) => service.suspend(actor(request), request.params.customer_id, request.body.reason),
  );

  app.post(
    "/admin/customers/:customer_id/unsuspend",
    {
      // The body is optional: no body at all reads as `{}`.
      preValidation: async (request) => {
        request.body ??= {};
      },
      onRequest: superuser,
      schema: {
        tags,
        summary: "Lift a customer's suspension",
        description:
          "Clears the suspension; keys, sessions (refresh tokens that had not expired), sign-in and streams work again " +
          "on every instance at once. The body and its `reason` are optional. Not suspended: 409 `not_suspended`. " +
          "Unknown customer: 404." +
          SUPERUSER_ONLY,
        security: SECURITY_JWT,
        params: CustomerParams,
        body: UnsuspendBody,
        response: {
          200: { ...SuspensionSchema, description: "The customer, now active." },
          ...AUTH_PROBLEMS,
          404: problem("not_found: no such customer."),
          409: problem("not_suspended: the customer is active."),
        },
      },
    },
    async (request) => service.unsuspend(actor(request), request.params.customer_id, request.body.reason),
  );

  app.post(
    "/admin/users/:user_id/superuser",
    {
      onRequest: superuser,
      schema: {
        tags,
        summary: "Grant or revoke the superuser flag",
        description:
          "Sets `is_superuser` of any user. The flag is not carried in the JWT: every request reads it from the user's " +
          "account row (cached at most 2 s, and dropped on every instance by this change), so it applies to the user's " +
          "next request; no session is ended and no new sign-in is needed. Revoking the last active superuser " +
          "(yourself included) is 409 `last_superuser`. Setting the flag the user already has answers 200 with " +
          "`changed: false` and writes no audit entry. Unknown user: 404." +
          SUPERUSER_ONLY,
        security: SECURITY_JWT,
        params: UserParams,
        body: SuperuserBody,
        response: {
          200: { ...SuperuserSchema, description: "The user's flag now." },
          ...AUTH_PROBLEMS,
          404: problem("not_found: no such user."),
          409: problem("last_superuser: revoking would leave no active superuser."),
        },
      },
    },
    async (request) => service.setSuperuser(actor(request), request.params.user_id, request.body.is_superuser),
  );
};
