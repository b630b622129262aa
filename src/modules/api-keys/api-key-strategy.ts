import type { FastifyRequest } from "fastify";
import { Counter } from "prom-client";
import type { AuthStrategy, Credential, Principal } from "../../platform/auth.ts";
import { type AppError, errors, isAppError } from "../../platform/errors.ts";
import { WindowCounter } from "../../platform/http/window-counter.ts";
import type { Metrics } from "../../platform/metrics.ts";
import type { ApiKeysService, VerifyFailure } from "./api-keys.service.ts";

const FAILURES: Readonly<Record<VerifyFailure, () => AppError>> = {
  malformed: errors.malformedApiKey,
  unknown: errors.invalidApiKey,
  revoked: errors.apiKeyRevoked,
  expired: errors.apiKeyExpired,
};

/**
 * Turns an API-key credential into a principal. Failed attempts are counted per client IP;
 * past `attemptsPerMinute` the IP gets 429 before any lookup, so guessing keys is slow.
 * The key itself is never logged (the logger redacts the headers that carry it).
 */
export class ApiKeyStrategy implements AuthStrategy {
  private readonly service: ApiKeysService;
  private readonly failures = new WindowCounter(60_000);
  private readonly attemptsPerMinute: number;
  private readonly outcomes: Record<"ok" | VerifyFailure | "throttled", { inc(): void }>;

  constructor(service: ApiKeysService, attemptsPerMinute: number, metrics: Metrics) {
    this.service = service;
    this.attemptsPerMinute = attemptsPerMinute;
    const c = new Counter({
      name: "vla_api_key_verifications_total",
      help: "API key verifications by result (ok, malformed, unknown, revoked, expired, throttled).",
      labelNames: ["result"],
      registers: [metrics.registry],
    });
    this.outcomes = {
      ok: c.labels("ok"),
      malformed: c.labels("malformed"),
      unknown: c.labels("unknown"),
      revoked: c.labels("revoked"),
      expired: c.labels("expired"),
      throttled: c.labels("throttled"),
    };
  }

  async verify(credential: Credential, request: FastifyRequest): Promise<Principal> {
    if (credential.kind !== "api_key") throw errors.invalidToken();
    const ip = request.ip;
    if (this.failures.peek(ip) >= this.attemptsPerMinute) {
      this.outcomes.throttled.inc();
      const hit = this.failures.hit(ip);
      throw errors.rateLimited(
        hit.resetInMs / 1000,
        "Too many invalid API key attempts from this address; wait a minute.",
      );
    }
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
    this.outcomes[outcome.reason].inc();
    this.failures.hit(ip);
    throw FAILURES[outcome.reason]();
  }

  close(): void {
    this.failures.close();
  }
}
