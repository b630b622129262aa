import { randomUUID } from "node:crypto";
import { recordAudit } from "../../platform/audit.ts";
import type { Principal, Scope } from "../../platform/auth.ts";
import type { DeletionRegistry } from "../../platform/deletion.ts";
import type { EmailMessage } from "../../platform/email.ts";
import { errors } from "../../platform/errors.ts";
import { suspendedError, suspensionOf } from "../../platform/suspension.ts";
import { normalizeEmail, type UsersRepo } from "../users/users.repo.ts";
import { accountDeletedEmail, passwordChangedEmail, passwordResetEmail, verificationEmail } from "./auth.emails.ts";
import type { AccountRow, AuthRepo } from "./auth.repo.ts";
import type { AccessTokenDenyList } from "./deny-list.ts";
import { burnVerifyTime, hashPassword, verifyPassword } from "./password.ts";
import { passwordProblem } from "./password-policy.ts";
import { type AttemptThrottle, type AuthThrottles, createAuthThrottles, type ThrottlePolicy } from "./throttle.ts";
import { type AccessClaims, type AccessTokens, randomToken, sha256 } from "./tokens.ts";

export const RESET_TOKEN_TTL_MS = 60 * 60_000;
export const VERIFY_TOKEN_TTL_MS = 48 * 60 * 60_000;
/** How long a user row read for token verification may be reused in process. */
export const ACCOUNT_CACHE_TTL_MS = 2_000;

export interface Mail {
  enqueue(message: EmailMessage): void;
}

/** Security events worth counting; the routes back this with Prometheus counters. */
export interface AuthEvents {
  login(result: "success" | "failure" | "throttled" | "suspended"): void;
  refreshReuse(): void;
  accountDeleted(scope: "user" | "customer"): void;
}

const NO_EVENTS: AuthEvents = { login() {}, refreshReuse() {}, accountDeleted() {} };

export interface AuthServiceOptions {
  readonly repo: AuthRepo;
  readonly users: UsersRepo;
  readonly tokens: AccessTokens;
  readonly denyList: AccessTokenDenyList;
  readonly mail: Mail;
  readonly deletion: DeletionRegistry;
  /** PUBLIC_BASE_URL: every emailed link starts here, never at the request's Host. */
  readonly publicBaseUrl: string;
  readonly refreshTokenTtlDays: number;
  readonly events?: AuthEvents;
  /** Shared through Redis (`createAuthThrottles`); in process when absent. */
  readonly throttles?: AuthThrottles;
  /** Policies of the in-process throttles made when `throttles` is absent. */
  readonly accountPolicy?: ThrottlePolicy;
  readonly ipPolicy?: ThrottlePolicy;
  /** Registrations per IP per hour (sign-up abuse). */
  readonly registrationsPerIpPerHour?: number;
  /** Reset / verification emails per address per hour; more requests answer the same but send nothing. */
  readonly emailsPerAddressPerHour?: number;
  /** Reset / verification requests per IP per 15 minutes before 429. */
  readonly emailRequestsPerIp?: number;
}

export interface Profile {
  readonly id: string;
  readonly email: string;
  readonly full_name: string | null;
  readonly customer_id: string;
  readonly company: string | null;
  readonly role: "owner" | "member";
  readonly tier: "free" | "pro" | "enterprise";
  readonly email_verified: boolean;
  readonly is_superuser: boolean;
  readonly created_at: string;
}

export interface TokenPair {
  readonly access_token: string;
  readonly token_type: "bearer";
  readonly expires_in: number;
  readonly refresh_token: string;
}

export interface RequestMeta {
  readonly ip: string;
  readonly requestId: string;
}

function toProfile(a: AccountRow): Profile {
  return {
    id: a.id,
    email: a.email,
    full_name: a.fullName,
    customer_id: a.customerId,
    company: a.company,
    role: a.role,
    tier: a.tier,
    email_verified: a.emailVerifiedAt !== null,
    is_superuser: a.isSuperuser,
    created_at: a.createdAt.toISOString(),
  };
}

export function scopesFor(role: AccountRow["role"]): readonly Scope[] {
  return role === "owner" ? ["inference", "admin"] : ["inference"];
}

function policyError(field: string, password: string) {
  const problem = passwordProblem(password);
  if (problem === undefined) return undefined;
  return errors.validation([{ in: "body", path: `/${field}`, message: `password ${problem}` }]);
}

/** Accounts, sessions, password and email flows. Framework-free: routes map HTTP onto these calls. */
export class AuthService {
  private readonly o: AuthServiceOptions;
  private readonly throttles: AuthThrottles;
  private readonly accountThrottle: AttemptThrottle;
  private readonly ipThrottle: AttemptThrottle;
  private readonly cache = new Map<string, { row: AccountRow; until: number }>();
  private readonly events: AuthEvents;

  constructor(options: AuthServiceOptions) {
    this.o = options;
    this.events = options.events ?? NO_EVENTS;
    this.throttles =
      options.throttles ??
      createAuthThrottles(undefined, {
        secret: "",
        ...(options.accountPolicy === undefined ? {} : { accountPolicy: options.accountPolicy }),
        ...(options.ipPolicy === undefined ? {} : { ipPolicy: options.ipPolicy }),
      });
    this.accountThrottle = this.throttles.account;
    this.ipThrottle = this.throttles.ip;
  }

  close(): void {
    this.throttles.registrations.close();
    this.throttles.emailsPerAddress.close();
    this.throttles.emailRequestsPerIp.close();
    this.cache.clear();
  }

  // ---- registration and profile ---------------------------------------------------------

  async register(
    input: { email: string; password: string; full_name?: string | undefined; company?: string | undefined },
    meta: RequestMeta,
  ): Promise<Profile> {
    const hit = await this.throttles.registrations.hit(meta.ip);
    if (hit.count > (this.o.registrationsPerIpPerHour ?? 30)) {
      throw errors.rateLimited(hit.resetInMs / 1000, "Too many registrations from this address; try again later.");
    }
    const bad = policyError("password", input.password);
    if (bad !== undefined) throw bad;
    const passwordHash = await hashPassword(input.password);
    const created = await this.o.users.createAccount({
      email: input.email,
      passwordHash,
      fullName: input.full_name?.trim() || null,
      company: input.company?.trim() || null,
    });
    // Deliberate trade-off (docs/auth.md): the product answers "taken" because an account is
    // usable at once; hiding it here would still leak through the first sign-in. Registration
    // is throttled per IP instead, which bounds enumeration through this route.
    if (created === undefined) throw errors.emailTaken();
    await this.sendVerification(created.user.id, created.user.email);
    const account = await this.o.repo.findAccount(created.user.id);
    if (account === undefined) throw errors.internal(new Error("account vanished after creation"));
    return toProfile(account);
  }

  /** Served from the short account cache the token check just filled: no extra query. */
  async profile(userId: string): Promise<Profile> {
    const account = await this.cachedAccount(userId);
    if (account === undefined) throw errors.invalidToken();
    return toProfile(account);
  }

  async updateProfile(userId: string, input: { full_name?: string | null | undefined }): Promise<Profile> {
    if (input.full_name !== undefined) {
      const name = input.full_name === null ? null : input.full_name.trim() || null;
      await this.o.repo.setFullName(userId, name);
      this.cache.delete(userId);
    }
    return this.profile(userId);
  }

  // ---- sign in, refresh, sign out -------------------------------------------------------

  /**
   * The OAuth2 password grant. Unknown email and wrong password take the same path: the same
   * error, a password verification either way (against a dummy hash when there is no user),
   * and a failure counted on both the account key and the IP. The attempt is charged to both
   * before the password is checked and handed back when it succeeds (throttle.ts).
   */
  async login(username: string, password: string, meta: RequestMeta): Promise<TokenPair> {
    const email = normalizeEmail(username);
    const accountKey = `acct:${email}`;
    const ipKey = `ip:${meta.ip}`;
    let wait = await this.ipThrottle.begin(ipKey);
    if (wait === 0) {
      wait = await this.accountThrottle.begin(accountKey);
      if (wait > 0) await this.ipThrottle.refund(ipKey);
    }
    if (wait > 0) {
      this.events.login("throttled");
      throw errors.rateLimited(wait / 1000, "Too many failed sign-in attempts; wait before trying again.");
    }
    const user = await this.o.users.findByEmail(email);
    let ok = false;
    if (user === undefined) {
      await burnVerifyTime(password);
    } else {
      const result = await verifyPassword(user.passwordHash, password);
      ok = result.ok && user.isActive;
      if (ok && result.needsRehash) {
        // Legacy bcrypt (or weaker Argon2) hash: upgrade now that we hold the plaintext.
        await this.o.repo.setPasswordHash(user.id, await hashPassword(password), false);
      }
    }
    if (!ok || user === undefined) {
      // Already charged to both keys by begin().
      this.events.login("failure");
      throw errors.invalidCredentials();
    }
    await Promise.all([this.accountThrottle.clear(accountKey), this.ipThrottle.refund(ipKey)]);
    // Only after the right password: a guesser learns nothing about the account's state.
    const account = await this.o.repo.findAccount(user.id);
    const suspension = account === undefined ? null : suspensionOf(account);
    if (suspension !== null) {
      this.events.login("suspended");
      throw suspendedError(suspension);
    }
    this.events.login("success");
    await this.o.repo.markLogin(user.id);
    return this.startSession(user.id, user.tokenVersion);
  }

  async refresh(refreshToken: string): Promise<TokenPair> {
    // Refused while suspended without spending the token, so the session resumes after unsuspension.
    const suspension = await this.o.repo.refreshTokenSuspension(sha256(refreshToken));
    if (suspension !== null) throw suspendedError(suspension);
    const next = randomToken();
    const result = await this.o.repo.rotateRefreshToken(sha256(refreshToken), {
      tokenHash: sha256(next),
      expiresAt: this.refreshExpiry(),
    });
    if (result.kind === "reused") {
      // A spent token came back: someone holds a copy. End the whole session for both parties.
      await this.o.repo.revokeFamily(result.familyId);
      this.events.refreshReuse();
      throw errors.invalidRefreshToken("This refresh token was already used; the session has been revoked.");
    }
    if (result.kind === "invalid") throw errors.invalidRefreshToken();
    const account = await this.o.repo.findAccount(result.previous.userId);
    if (account === undefined || !account.isActive) {
      await this.o.repo.revokeFamily(result.previous.familyId);
      throw errors.invalidRefreshToken();
    }
    const access = await this.o.tokens.sign({
      userId: account.id,
      tokenVersion: account.tokenVersion,
      sessionId: result.previous.familyId,
    });
    return this.pair(access.token, next);
  }

  async logout(claims: AccessClaims): Promise<void> {
    await this.o.denyList.add(claims.jti, claims.exp);
    await this.o.repo.revokeFamily(claims.sid);
  }

  async logoutAll(userId: string): Promise<void> {
    await this.o.repo.bumpTokenVersion(userId);
    await this.o.repo.revokeAllRefreshTokens(userId);
    this.cache.delete(userId);
  }

  /** Verifies an access token and resolves the principal; 401 invalid_token on any failure. */
  async authenticate(token: string): Promise<{ principal: Principal; claims: AccessClaims }> {
    const claims = await this.o.tokens.verify(token);
    if (await this.o.denyList.has(claims.jti)) throw errors.invalidToken("The access token was revoked (signed out).");
    const account = await this.cachedAccount(claims.sub);
    if (account === undefined || !account.isActive) throw errors.invalidToken();
    if (account.tokenVersion !== claims.ver) {
      throw errors.invalidToken("The access token was revoked (password changed or signed out everywhere).");
    }
    // The suspension rides on the cached account row: no extra query per request.
    const suspension = suspensionOf(account);
    if (suspension !== null) throw suspendedError(suspension);
    return {
      claims,
      principal: {
        kind: "user",
        customerId: account.customerId,
        userId: account.id,
        apiKeyId: null,
        scopes: scopesFor(account.role),
        isSuperuser: account.isSuperuser,
        tier: account.tier,
        token: { jti: claims.jti, exp: claims.exp },
      },
    };
  }

  // ---- passwords ------------------------------------------------------------------------

  /** Changes the password; every other session ends, and the caller gets a fresh pair. */
  async changePassword(userId: string, current: string, next: string): Promise<TokenPair> {
    const accountKey = `pwd:${userId}`;
    const wait = await this.accountThrottle.begin(accountKey);
    if (wait > 0) throw errors.rateLimited(wait / 1000, "Too many wrong passwords; wait before trying again.");
    const user = await this.o.users.findById(userId);
    if (user === undefined) throw errors.invalidToken();
    const verified = await verifyPassword(user.passwordHash, current);
    if (!verified.ok) throw errors.validation([{ in: "body", path: "/current_password", message: "is incorrect" }]);
    await this.accountThrottle.clear(accountKey);
    const bad = policyError("new_password", next);
    if (bad !== undefined) throw bad;
    const version = await this.o.repo.setPasswordHash(userId, await hashPassword(next), true);
    await this.o.repo.revokeAllRefreshTokens(userId);
    this.cache.delete(userId);
    this.o.mail.enqueue(passwordChangedEmail(user.email, "changed", this.link("/reset-password")));
    return this.startSession(userId, version ?? user.tokenVersion + 1);
  }

  /** Always resolves the same way whether or not the address has an account. */
  async requestPasswordReset(emailInput: string, meta: RequestMeta): Promise<void> {
    await this.limitEmailRequests(meta.ip);
    const email = normalizeEmail(emailInput);
    const user = await this.o.users.findByEmail(email);
    if (user === undefined || !user.isActive) return;
    if ((await this.throttles.emailsPerAddress.hit(`reset:${email}`)).count > (this.o.emailsPerAddressPerHour ?? 5)) {
      return;
    }
    const token = randomToken();
    await this.o.repo.insertEmailToken({
      userId: user.id,
      purpose: "password_reset",
      tokenHash: sha256(token),
      email: user.email,
      expiresAt: new Date(Date.now() + RESET_TOKEN_TTL_MS),
    });
    this.o.mail.enqueue(
      passwordResetEmail(
        user.email,
        this.link(`/reset-password?token=${encodeURIComponent(token)}`),
        token,
        this.o.publicBaseUrl,
      ),
    );
  }

  async confirmPasswordReset(token: string, newPassword: string): Promise<void> {
    const bad = policyError("new_password", newPassword);
    if (bad !== undefined) throw bad;
    const row = await this.o.repo.consumeEmailToken(sha256(token), "password_reset");
    if (row === undefined) throw errors.invalidEmailToken();
    await this.o.repo.setPasswordHash(row.userId, await hashPassword(newPassword), true);
    await this.o.repo.revokeAllRefreshTokens(row.userId);
    await this.o.repo.invalidateEmailTokens(row.userId, "password_reset");
    // Following the link proved control of the address.
    await this.o.repo.markEmailVerified(row.userId, row.email);
    this.cache.delete(row.userId);
    await this.accountThrottle.clear(`acct:${row.email}`);
    this.o.mail.enqueue(passwordChangedEmail(row.email, "reset", this.link("/reset-password")));
  }

  // ---- email verification ---------------------------------------------------------------

  /** Resends the verification link; does nothing when already verified or sent too often. */
  async requestVerification(userId: string, meta: RequestMeta): Promise<void> {
    await this.limitEmailRequests(meta.ip);
    const account = await this.o.repo.findAccount(userId);
    if (account === undefined) throw errors.invalidToken();
    if (account.emailVerifiedAt !== null) return;
    const sent = await this.throttles.emailsPerAddress.hit(`verify:${account.email}`);
    if (sent.count > (this.o.emailsPerAddressPerHour ?? 5)) return;
    await this.sendVerification(account.id, account.email);
  }

  async confirmVerification(token: string): Promise<void> {
    const row = await this.o.repo.consumeEmailToken(sha256(token), "verify_email");
    if (row === undefined) throw errors.invalidEmailToken();
    if (!(await this.o.repo.markEmailVerified(row.userId, row.email))) throw errors.invalidEmailToken();
    this.cache.delete(row.userId);
  }

  // ---- deletion -------------------------------------------------------------------------

  /**
   * GDPR erasure. Runs every registered deletion hook in one transaction, deletes the user and,
   * when nobody else belongs to it, the customer; writes an audit entry with row counts only.
   */
  async deleteAccount(
    principal: Principal,
    claims: AccessClaims,
    password: string,
    meta: RequestMeta,
  ): Promise<{ customerDeleted: boolean; counts: Record<string, number> }> {
    const userId = principal.userId;
    if (userId === null) throw errors.forbidden("Only a signed-in user can delete their account.");
    const accountKey = `pwd:${userId}`;
    const wait = await this.accountThrottle.begin(accountKey);
    if (wait > 0) throw errors.rateLimited(wait / 1000, "Too many wrong passwords; wait before trying again.");
    const user = await this.o.users.findById(userId);
    if (user === undefined) throw errors.invalidToken();
    if (!(await verifyPassword(user.passwordHash, password)).ok) {
      throw errors.validation([{ in: "body", path: "/password", message: "is incorrect" }]);
    }
    await this.accountThrottle.clear(accountKey);
    const customerId = user.customerId;
    const result = await this.o.repo.transaction(async (tx) => {
      const others = await this.o.repo.otherMembers(tx, customerId, userId);
      const wholeCustomer = others === 0;
      const counts = await this.o.deletion.run({ tx, userId, customerId }, wholeCustomer);
      counts.users = (counts.users ?? 0) + (await this.o.repo.deleteUserRow(tx, userId));
      if (wholeCustomer)
        counts.customers = (counts.customers ?? 0) + (await this.o.repo.deleteCustomerRow(tx, customerId));
      await recordAudit(tx, {
        actorUserId: userId,
        actorCustomerId: customerId,
        actorApiKeyId: null,
        customerId,
        action: "account.delete",
        targetType: wholeCustomer ? "customer" : "user",
        targetId: wholeCustomer ? customerId : userId,
        requestId: meta.requestId,
        ip: meta.ip,
        details: { deleted: counts, customer_deleted: wholeCustomer, hooks: [...this.o.deletion.names] },
      });
      return { customerDeleted: wholeCustomer, counts };
    });
    this.cache.delete(userId);
    await this.o.deletion.afterCommit({ userId, customerId, wholeCustomer: result.customerDeleted });
    this.events.accountDeleted(result.customerDeleted ? "customer" : "user");
    await this.o.denyList.add(claims.jti, claims.exp);
    this.o.mail.enqueue(accountDeletedEmail(user.email, result.customerDeleted));
    return result;
  }

  // ---- internals ------------------------------------------------------------------------

  private async startSession(userId: string, tokenVersion: number): Promise<TokenPair> {
    const familyId = randomUUID();
    const refresh = randomToken();
    await this.o.repo.insertRefreshToken({
      userId,
      familyId,
      tokenHash: sha256(refresh),
      expiresAt: this.refreshExpiry(),
    });
    const access = await this.o.tokens.sign({ userId, tokenVersion, sessionId: familyId });
    return this.pair(access.token, refresh);
  }

  private pair(accessToken: string, refreshToken: string): TokenPair {
    return {
      access_token: accessToken,
      token_type: "bearer",
      expires_in: this.o.tokens.ttlSeconds,
      refresh_token: refreshToken,
    };
  }

  private refreshExpiry(): Date {
    return new Date(Date.now() + this.o.refreshTokenTtlDays * 86_400_000);
  }

  private async sendVerification(userId: string, email: string): Promise<void> {
    const token = randomToken();
    await this.o.repo.insertEmailToken({
      userId,
      purpose: "verify_email",
      tokenHash: sha256(token),
      email,
      expiresAt: new Date(Date.now() + VERIFY_TOKEN_TTL_MS),
    });
    this.o.mail.enqueue(
      verificationEmail(
        email,
        this.link(`/verify-email?token=${encodeURIComponent(token)}`),
        token,
        this.o.publicBaseUrl,
      ),
    );
  }

  private link(pathAndQuery: string): string {
    return `${this.o.publicBaseUrl}${pathAndQuery}`;
  }

  private async limitEmailRequests(ip: string): Promise<void> {
    const hit = await this.throttles.emailRequestsPerIp.hit(ip);
    if (hit.count > (this.o.emailRequestsPerIp ?? 30)) {
      throw errors.rateLimited(hit.resetInMs / 1000, "Too many email requests from this address; try again later.");
    }
  }

  /** Drops one user's cached account row (is_superuser or activity changed elsewhere). */
  forgetUser(userId: string): void {
    this.cache.delete(userId);
  }

  /** Drops the cached account rows of a customer's members (suspension, tier change). */
  forgetCustomer(customerId: string): void {
    for (const [id, hit] of this.cache) if (hit.row.customerId === customerId) this.cache.delete(id);
  }

  forgetAll(): void {
    this.cache.clear();
  }

  /** User rows for token checks are reused for ACCOUNT_CACHE_TTL_MS; local changes evict at once. */
  private async cachedAccount(userId: string): Promise<AccountRow | undefined> {
    const now = Date.now();
    const hit = this.cache.get(userId);
    if (hit !== undefined && hit.until > now) return hit.row;
    const row = await this.o.repo.findAccount(userId);
    if (row !== undefined) {
      if (this.cache.size >= 10_000) this.cache.clear();
      this.cache.set(userId, { row, until: now + ACCOUNT_CACHE_TTL_MS });
    } else {
      this.cache.delete(userId);
    }
    return row;
  }
}
