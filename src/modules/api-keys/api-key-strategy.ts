import type { FastifyRequest } from "fastify";
import { Counter } from "prom-client";
import type { AuthStrategy, Credential, Principal } from "../../platform/auth.ts";
import { type AppError, errors, isAppError } from "../../platform/errors.ts";
import type { Metrics } from "../../platform/metrics.ts";
import { suspendedError } from "../../platform/suspension.ts";
import type { ApiKeysService, VerifyFailure } from "./api-keys.service.ts";
import { KeyFailureThrottle, type KeyThrottle } from "./key-throttle.ts";

const FAILURES: Readonly<Record<VerifyFailure, () => AppError>> = {
  malformed: errors.malformedApiKey,
  unknown: errors.invalidApiKey,
  revoked: errors.apiKeyRevoked,
  expired: errors.apiKeyExpired,
};

/**
 * Turns an API-key credential into a principal. Failed attempts are counted per client IP;
 * past `attemptsPerMinute` the IP's failing attempts get 429, so guessing keys is slow, while
 * valid keys from the same IP are still served (`KeyFailureThrottle` says how that stays a
 * throttle); a key this instance holds as valid is served before the throttle is asked. The
 * key itself is never logged (the logger redacts the headers that carry it). The throttle is
 * shared by every instance through Redis when configured (`createKeyThrottle`).
 */
export class ApiKeyStrategy implements AuthStrategy {
  private readonly service: ApiKeysService;
  private readonly throttle: KeyThrottle;
  private readonly outcomes: Record<"ok" | VerifyFailure | "suspended" | "throttled", { inc(): void }>;

  constructor(service: ApiKeysService, throttle: KeyThrottle | number, metrics: Metrics) {
    this.service = service;
    this.throttle = typeof throttle === "number" ? new KeyFailureThrottle(throttle) : throttle;
    const c = new Counter({
      name: "vla_api_key_verifications_total",
      help: "API key verifications by result (ok, malformed, unknown, revoked, expired, suspended, throttled).",
      labelNames: ["result"],
      registers: [metrics.registry],
    });
    this.outcomes = {
      ok: c.labels("ok"),
      malformed: c.labels("malformed"),
      unknown: c.labels("unknown"),
      revoked: c.labels("revoked"),
      expired: c.labels("expired"),
      suspended: c.labels("suspended"),
      throttled: c.labels("throttled"),
    };
  }

  async verify(credential: Credential, request: FastifyRequest): Promise<Principal> {
    if (credential.kind !== "api_key") throw errors.invalidToken();
    const ip = request.ip;
    // A key this instance holds as valid is no guess: served without asking the throttle (one
    // Redis round trip less per request). The throttle stays in front of every lookup.
    const known = this.service.verifyKnown(credential.key);
    if (known?.ok === true) {
      this.outcomes.ok.inc();
      return known.principal;
    }
    let decision = this.throttle.check(ip, credential.key);
    if (decision instanceof Promise) decision = await decision;
    if (decision.throttled && !decision.lookup) throw await this.throttled(ip);
    let outcome = this.service.verify(credential.key);
    if (outcome instanceof Promise) {
      try {
        outcome = await outcome;
      } catch (e) {
        throw isAppError(e) ? e : errors.databaseUnavailable(e);
      }
    }
    if (outcome.ok) {
      this.outcomes.ok.inc();
      return outcome.principal;
    }
    // While throttled, every failure is a 429 that does not say why the key failed.
    if (decision.throttled) throw await this.throttled(ip);
    if (outcome.reason === "suspended") {
      // A real key of a suspended customer: said plainly, and not a guess to throttle.
      this.outcomes.suspended.inc();
      throw suspendedError(outcome.suspension);
    }
    this.outcomes[outcome.reason].inc();
    await this.throttle.fail(ip);
    throw FAILURES[outcome.reason]();
  }

  private async throttled(ip: string): Promise<AppError> {
    this.outcomes.throttled.inc();
    return errors.rateLimited(
      await this.throttle.fail(ip),
      "Too many invalid API key attempts from this address; wait a minute.",
    );
  }

  close(): void {
    this.throttle.close();
  }
}
