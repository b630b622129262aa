import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyRequest } from "fastify";
import { Counter } from "prom-client";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { USER_TOPIC } from "../../platform/suspension.ts";
import { CUSTOMER_TOPIC } from "../rate-limit/rate-limits.ts";
import { UsersRepo } from "../users/users.repo.ts";
import { authPages } from "./auth.pages.ts";
import { AuthRepo } from "./auth.repo.ts";
import {
  AcceptedSchema,
  ChangePasswordBody,
  DeleteMeBody,
  EmailBody,
  EmptyResponse,
  ProfileSchema,
  RefreshBody,
  RegisterBody,
  ResetConfirmBody,
  TokenBody,
  TokenOnlyBody,
  TokenResponse,
  UpdateMeBody,
} from "./auth.schemas.ts";
import { type AuthEvents, AuthService, type RequestMeta } from "./auth.service.ts";
import { AccessTokenDenyList } from "./deny-list.ts";
import { burnVerifyTime } from "./password.ts";
import { createAuthThrottles } from "./throttle.ts";
import { type AccessClaims, AccessTokens } from "./tokens.ts";

const JSON_TYPES = ["application/json"];
const TOKEN_TYPES = ["application/x-www-form-urlencoded", "application/json"];

/** Refuses bodies in any other media type (a form post cannot reach JSON routes: no login CSRF). */
function accept(types: readonly string[]) {
  return async (request: FastifyRequest) => {
    const raw = request.headers["content-type"];
    const type = raw?.split(";")[0]?.trim().toLowerCase();
    if (type === undefined || !types.includes(type)) throw errors.unsupportedMediaType(raw, types);
    // Emails are normalized: surrounding spaces (a paste from a mail client) are not an error.
    const body = request.body;
    if (typeof body === "object" && body !== null) {
      const fields = body as Record<string, unknown>;
      for (const f of ["email", "username"]) {
        const v = fields[f];
        if (typeof v === "string") fields[f] = v.trim();
      }
    }
  };
}

function meta(request: FastifyRequest): RequestMeta {
  return { ip: request.ip, requestId: String(request.id) };
}

const SUMMARY_TAGS = { tags: ["auth"] };
/** A user session: a Bearer JWT, which the docs page can also obtain through the OAuth2 password flow. */
const SECURITY_USER: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { oauth2Password: [] }];

/** Accounts, sign-in, sessions, password and email flows under /auth. */
export const authRoutes: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const { config } = platform;
  const db = platform.database.db;
  const repo = new AuthRepo(db);
  const denyList = new AccessTokenDenyList(db, platform.redis);
  const registers = [platform.metrics.registry];
  const logins = new Counter({
    name: "vla_auth_logins_total",
    help: "Sign-in attempts by result (success, failure, throttled, suspended).",
    labelNames: ["result"],
    registers,
  });
  const reuse = new Counter({
    name: "vla_auth_refresh_reuse_total",
    help: "Spent refresh tokens presented again (possible theft); each revoked a session.",
    registers,
  });
  const deletions = new Counter({
    name: "vla_auth_account_deletions_total",
    help: "Accounts erased, by scope (user only, or the whole customer).",
    labelNames: ["scope"],
    registers,
  });
  const events: AuthEvents = {
    login: (result) => logins.inc({ result }),
    refreshReuse: () => reuse.inc(),
    accountDeleted: (scope) => deletions.inc({ scope }),
  };
  const service = new AuthService({
    repo,
    users: new UsersRepo(db),
    tokens: new AccessTokens({
      secretKey: config.auth.secretKey,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      ttlSeconds: config.auth.accessTokenTtlSeconds,
    }),
    denyList,
    mail: platform.email,
    deletion: platform.deletion,
    publicBaseUrl: config.http.publicBaseUrl,
    refreshTokenTtlDays: config.auth.refreshTokenTtlDays,
    events,
    // Shared by every instance through Redis when configured (docs/auth.md#throttles).
    throttles: createAuthThrottles(platform.redis, { secret: config.auth.secretKey, now: platform.now }),
  });
  // Cached account rows (suspension, tier, is_superuser) are dropped on every instance when an
  // operator changes them, instead of waiting out ACCOUNT_CACHE_TTL_MS.
  platform.invalidation.on(CUSTOMER_TOPIC, (id) => service.forgetCustomer(id));
  platform.invalidation.on(USER_TOPIC, (id) => service.forgetUser(id));
  platform.invalidation.onReset(() => service.forgetAll());
  // Compute the dummy hash now, so the first sign-in with an unknown email is not the slow one.
  void burnVerifyTime("warm-up");

  // Nothing under /auth (tokens, profiles, errors) may be stored by a cache.
  app.addHook("onRequest", async (_request, reply) => {
    reply.header("cache-control", "no-store");
  });

  // Verified claims of the request's access token, for logout (jti, session id).
  const claimsOf = new WeakMap<FastifyRequest, AccessClaims>();
  platform.auth.useJwt({
    async verify(credential, request) {
      if (credential.kind !== "jwt") throw errors.invalidToken();
      const { principal, claims } = await service.authenticate(credential.token);
      claimsOf.set(request, claims);
      return principal;
    },
  });
  const requireUser = platform.auth.require({ kinds: ["user"] });
  const claims = (request: FastifyRequest): AccessClaims => {
    const c = claimsOf.get(request);
    if (c === undefined) throw errors.unauthorized();
    return c;
  };
  const userId = (request: FastifyRequest): string => {
    const id = request.principal?.userId;
    if (id === undefined || id === null) throw errors.unauthorized();
    return id;
  };

  platform.deletion.register({
    name: "auth",
    deleteUser: ({ tx, userId: id }) => repo.deleteUserSessions(tx, id),
  });

  const sweeper = setInterval(() => {
    Promise.all([denyList.sweep(), repo.sweepExpired()]).catch((err: unknown) =>
      app.log.warn({ err }, "auth: sweeping expired tokens failed"),
    );
  }, 60 * 60_000);
  sweeper.unref();
  platform.lifecycle.onFlush("auth", () => {
    clearInterval(sweeper);
    service.close();
  });

  const json = accept(JSON_TYPES);
  await app.register(authPages, { service });

  app.post(
    "/auth/register",
    {
      preValidation: json,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Create an account",
        description:
          "Creates a user and its customer account (tier free, the user as owner) and emails a verification link. " +
          "Answers 201 with the profile. An email that is already registered answers 409 `email_taken`: a deliberate, " +
          "documented trade-off (docs/auth.md), since a new account is usable at once and a first sign-in would reveal " +
          "the same fact; registration is throttled per IP (30 per hour) to bound enumeration. " +
          "`is_superuser`, `tier`, quotas and Stripe ids cannot be set here (422).",
        body: RegisterBody,
        response: { 201: ProfileSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await service.register(request.body, meta(request))),
  );

  app.post(
    "/auth/token",
    {
      preValidation: accept(TOKEN_TYPES),
      schema: {
        ...SUMMARY_TAGS,
        summary: "Sign in (OAuth2 password grant)",
        description:
          "Exchanges email (`username`) and password for an access token (JWT, 15 minutes by default) and a refresh " +
          "token (opaque, 30 days, single use). Send `application/x-www-form-urlencoded` as OAuth2 clients and the " +
          "docs page do, or JSON. Unknown email and wrong password answer the same 401 `invalid_credentials`. " +
          "Failed attempts are throttled per account (5 free, then 1 s doubling to 5 min) and per IP (20 free, then " +
          "doubling to 15 min): 429 `rate_limited` with Retry-After.",
        consumes: TOKEN_TYPES,
        body: TokenBody,
        response: { 200: TokenResponse },
      },
    },
    async (request) => {
      return service.login(request.body.username, request.body.password, meta(request));
    },
  );

  app.post(
    "/auth/refresh",
    {
      preValidation: json,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Rotate the refresh token",
        description:
          "Spends the refresh token and returns a new pair. A refresh token works once: presenting one that was " +
          "already used revokes its whole session (both the thief's and the owner's copies) and answers 401 " +
          "`invalid_refresh_token`.",
        body: RefreshBody,
        response: { 200: TokenResponse },
      },
    },
    async (request) => service.refresh(request.body.refresh_token),
  );

  app.get(
    "/auth/me",
    {
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Current user",
        description: "The signed-in user's profile with customer id, tier, email_verified and is_superuser.",
        security: SECURITY_USER,
        response: { 200: ProfileSchema },
      },
    },
    async (request) => service.profile(userId(request)),
  );

  app.patch(
    "/auth/me",
    {
      preValidation: json,
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Update the profile",
        description: "Changes `full_name` (null clears it). No other field can be changed here.",
        security: SECURITY_USER,
        body: UpdateMeBody,
        response: { 200: ProfileSchema },
      },
    },
    async (request) => service.updateProfile(userId(request), request.body),
  );

  app.delete(
    "/auth/me",
    {
      preValidation: json,
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Delete the account (GDPR erasure)",
        description:
          "Needs the current password. Deletes the user and, when they are the customer's only member, every piece of " +
          "the customer's data through the registered deletion hooks, in one transaction. An audit entry records who, " +
          "when and how many rows per table, never the content. A goodbye email is sent. 204 on success.",
        security: SECURITY_USER,
        body: DeleteMeBody,
        response: { 204: EmptyResponse },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (principal === null) throw errors.unauthorized();
      await service.deleteAccount(principal, claims(request), request.body.password, meta(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/auth/me/password",
    {
      preValidation: json,
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Change the password",
        description:
          "Needs the current password. Every existing session ends (token version bumped, refresh tokens revoked); " +
          "the response carries a fresh token pair for this client, and a notice is emailed.",
        security: SECURITY_USER,
        body: ChangePasswordBody,
        response: { 200: TokenResponse },
      },
    },
    async (request) =>
      service.changePassword(userId(request), request.body.current_password, request.body.new_password),
  );

  app.post(
    "/auth/logout",
    {
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Sign out this session",
        description:
          "The access token stops working at once (its id is deny-listed until it expires) and the refresh tokens of " +
          "its session are revoked. 204.",
        security: SECURITY_USER,
        response: { 204: EmptyResponse },
      },
    },
    async (request, reply) => {
      await service.logout(claims(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/auth/logout-all",
    {
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Sign out everywhere",
        description:
          "Ends every session of the user: all access tokens (token version bump) and all refresh tokens. 204.",
        security: SECURITY_USER,
        response: { 204: EmptyResponse },
      },
    },
    async (request, reply) => {
      await service.logoutAll(userId(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/auth/password-reset/request",
    {
      preValidation: json,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Request a password reset email",
        description:
          "Always answers 202 with the same body, whether or not the address has an account. When it has, a single-use " +
          "link valid for 1 hour is emailed (at most 5 per address per hour). Throttled per IP (30 per 15 minutes).",
        body: EmailBody,
        response: { 202: AcceptedSchema },
      },
    },
    async (request, reply) => {
      await service.requestPasswordReset(request.body.email, meta(request));
      return reply.code(202).send({
        status: "accepted",
        message: "If an account exists for this address, we have sent it a link to reset the password.",
      });
    },
  );

  app.post(
    "/auth/password-reset/confirm",
    {
      preValidation: json,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Set a new password with a reset token",
        description:
          "Consumes the emailed token (single use, 1 hour) and sets the new password. Every session of the account " +
          "ends and a notice is emailed. An unknown, used or expired token answers 400 `invalid_email_token`. 204.",
        body: ResetConfirmBody,
        response: { 204: EmptyResponse },
      },
    },
    async (request, reply) => {
      await service.confirmPasswordReset(request.body.token, request.body.new_password);
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/auth/verify-email/request",
    {
      onRequest: requireUser,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Resend the verification email",
        description:
          "Emails a new verification link (48 hours, single use) to the signed-in user's address unless it is already " +
          "verified. Always 202.",
        security: SECURITY_USER,
        response: { 202: AcceptedSchema },
      },
    },
    async (request, reply) => {
      await service.requestVerification(userId(request), meta(request));
      return reply
        .code(202)
        .send({ status: "accepted", message: "If the address is not verified yet, a new link is on its way." });
    },
  );

  app.post(
    "/auth/verify-email/confirm",
    {
      preValidation: json,
      schema: {
        ...SUMMARY_TAGS,
        summary: "Confirm the email address",
        description:
          "Consumes the emailed verification token. An unknown, used or expired token answers 400 " +
          "`invalid_email_token`. 204.",
        body: TokenOnlyBody,
        response: { 204: EmptyResponse },
      },
    },
    async (request, reply) => {
      await service.confirmVerification(request.body.token);
      return reply.code(204).send(null);
    },
  );
};
