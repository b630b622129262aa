import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { AppError, errors } from "./errors.ts";
import { endSpan, requestTrace, startChild } from "./tracing.ts";

/**
 * The request principal: who is calling, for which customer, with which scopes. Every
 * authenticated route sees exactly this, whether the caller used a JWT (dashboard, account
 * management) or an API key (robots). Strategies that turn credentials into principals are
 * registered by the auth module (JWT) and the api-keys module (keys).
 */
export type Scope = "inference" | "admin";
export const ALL_SCOPES: readonly Scope[] = ["inference", "admin"];
export type Tier = "free" | "pro" | "enterprise";

/**
 * Inference defaults an API key carries (null: none): a request that names no robot, model or
 * unnorm_key uses the key's. Only `robotId` binds: a request naming another robot is refused
 * (403 `robot_mismatch`); a model or unnorm_key named in the request overrides the key's.
 */
export interface KeyDefaults {
  readonly robotId: string | null;
  readonly model: string | null;
  readonly unnormKey: string | null;
}

export interface Principal {
  readonly kind: "user" | "api_key";
  readonly customerId: string;
  readonly userId: string | null;
  readonly apiKeyId: string | null;
  readonly scopes: readonly Scope[];
  readonly isSuperuser: boolean;
  readonly tier: Tier;
  /** API-key principals: the key's inference defaults (absent for sessions). */
  readonly keyDefaults?: KeyDefaults;
  /** For JWT principals: the token's id and expiry (seconds since epoch), for logout. */
  readonly token?: { readonly jti: string; readonly exp: number };
}

/** A credential as found in the request headers, before verification. */
export type Credential =
  | { readonly kind: "jwt"; readonly token: string }
  | { readonly kind: "api_key"; readonly key: string; readonly via: "bearer" | "x-api-key" | "api-key" };

export interface AuthStrategy {
  /** Resolves to a principal or throws an AppError (401 invalid_token, 401 invalid_api_key, ...). */
  verify(credential: Credential, request: FastifyRequest): Promise<Principal>;
}

/** API keys are recognisable by prefix; anything else after `Bearer` is treated as a JWT. */
export const API_KEY_PREFIXES = ["vla_live_", "vla_test_"] as const;

export function looksLikeApiKey(value: string): boolean {
  return API_KEY_PREFIXES.some((p) => value.startsWith(p));
}

/**
 * Finds the credential in the headers. Accepted forms:
 * `Authorization: Bearer <jwt | vla_ key>`, `X-API-Key: <key>`, `Authorization: Api-Key <key>`
 * (what openpi's client sends). Returns undefined when no credential is present.
 */
export function extractCredential(headers: FastifyRequest["headers"]): Credential | undefined {
  const xKey = headers["x-api-key"];
  if (typeof xKey === "string" && xKey.trim() !== "") return { kind: "api_key", key: xKey.trim(), via: "x-api-key" };
  const auth = headers.authorization;
  if (typeof auth !== "string" || auth.trim() === "") return undefined;
  const match = /^(\S+)\s+(\S+)\s*$/.exec(auth.trim());
  if (match === null)
    throw errors.unauthorized("The Authorization header must be `Bearer <token>` or `Api-Key <key>`.");
  const scheme = (match[1] as string).toLowerCase();
  const value = match[2] as string;
  if (scheme === "api-key") return { kind: "api_key", key: value, via: "api-key" };
  if (scheme === "bearer")
    return looksLikeApiKey(value) ? { kind: "api_key", key: value, via: "bearer" } : { kind: "jwt", token: value };
  throw errors.unauthorized(`Unsupported authorization scheme "${match[1]}"; use Bearer or Api-Key.`);
}

export interface RequireOptions {
  /** Every listed scope is needed. JWT principals of an account owner hold all scopes. */
  readonly scopes?: readonly Scope[];
  /** Restrict to one kind of credential (e.g. account management by JWT only). */
  readonly kinds?: readonly Principal["kind"][];
  readonly superuser?: boolean;
}

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export class AuthRegistry {
  private jwt: AuthStrategy | undefined;
  private apiKey: AuthStrategy | undefined;

  useJwt(strategy: AuthStrategy): void {
    this.jwt = strategy;
  }

  useApiKeys(strategy: AuthStrategy): void {
    this.apiKey = strategy;
  }

  /** Verifies the request's credential; undefined when it carries none. */
  async authenticate(request: FastifyRequest): Promise<Principal | undefined> {
    const credential = extractCredential(request.headers);
    if (credential === undefined) return undefined;
    return this.verify(credential, request);
  }

  /** Verifies a credential found elsewhere than the headers (a WebSocket `auth` message). */
  async verify(credential: Credential, request: FastifyRequest): Promise<Principal> {
    const strategy = credential.kind === "jwt" ? this.jwt : this.apiKey;
    if (strategy === undefined) {
      throw new AppError("unauthorized", {
        detail: `Authentication by ${credential.kind} is not enabled on this server.`,
      });
    }
    return strategy.verify(credential, request);
  }

  /**
   * An `onRequest` hook that requires a principal with the given scopes and sets
   * `request.principal`. Routes put it in `onRequest` so a stranger (or a key without the
   * scope) gets its 401/403 before the body is read, parsed or validated: a malformed body
   * tells it nothing, and its 10 MB upload costs nothing.
   */
  require(options: RequireOptions = {}): onRequestAsyncHookHandler {
    return async (request: FastifyRequest, _reply: FastifyReply) => {
      const span = startChild(requestTrace(request), "auth");
      let principal: Principal | undefined;
      try {
        principal = await this.authenticate(request);
      } catch (e) {
        endSpan(span, e);
        throw e;
      }
      // The credential's kind only: never the key, token or the principal's email.
      if (span !== undefined) {
        endSpan(span, principal === undefined ? errors.unauthorized() : undefined, {
          "vla.auth.kind": principal?.kind ?? "none",
        });
      }
      if (principal === undefined) throw errors.unauthorized();
      if (options.kinds !== undefined && !options.kinds.includes(principal.kind)) {
        throw errors.forbidden(
          principal.kind === "api_key"
            ? "This route needs a user session (JWT), not an API key."
            : "This route needs an API key.",
        );
      }
      const missing = (options.scopes ?? []).filter((s) => !principal.scopes.includes(s));
      if (missing.length > 0) throw errors.forbidden(`Missing scope: ${missing.join(", ")}.`);
      if (options.superuser === true && !principal.isSuperuser) throw errors.forbidden("Superuser only.");
      request.principal = principal;
    };
  }
}

/** OpenAPI security requirement for routes that take a JWT or an API key. */
export const SECURITY_ANY = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
export const SECURITY_JWT = [{ bearerAuth: [] }];
