import type { FastifyRequest } from "fastify";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { Principal } from "../../platform/auth.ts";
import type { Metrics } from "../../platform/metrics.ts";
import { ApiKeyStrategy } from "./api-key-strategy.ts";
import type { ApiKeysService, VerifyOutcome } from "./api-keys.service.ts";
import type { KeyThrottle, ThrottleDecision } from "./key-throttle.ts";

const principal = { kind: "api_key", customerId: "c", apiKeyId: "k", scopes: ["inference"] } as unknown as Principal;

/** A throttle that counts its calls (each is a Redis round trip in the shared one). */
function countingThrottle(decision: ThrottleDecision = { throttled: false }) {
  const calls = { check: 0, fail: 0 };
  const throttle: KeyThrottle = {
    check: () => {
      calls.check++;
      return decision;
    },
    fail: () => {
      calls.fail++;
      return 60;
    },
    close: () => {},
  };
  return { throttle, calls };
}

/** The service as the strategy sees it: what this instance holds cached, and the full lookup. */
function service(known: Map<string, VerifyOutcome>, lookups: { n: number }) {
  return {
    verifyKnown: (key: string) => known.get(key),
    verify: async (key: string): Promise<VerifyOutcome> => {
      lookups.n++;
      return known.get(key) ?? { ok: false, reason: "unknown" };
    },
  } as unknown as ApiKeysService;
}

const request = { ip: "203.0.113.7" } as FastifyRequest;
const metrics = () => ({ registry: new Registry() }) as unknown as Metrics;

describe("ApiKeyStrategy", () => {
  it("a key held as valid is served without asking the throttle or looking it up", async () => {
    const { throttle, calls } = countingThrottle();
    const lookups = { n: 0 };
    const s = new ApiKeyStrategy(service(new Map([["good", { ok: true, principal }]]), lookups), throttle, metrics());
    expect(await s.verify({ kind: "api_key", key: "good", via: "x-api-key" }, request)).toBe(principal);
    expect(calls).toEqual({ check: 0, fail: 0 });
    expect(lookups.n).toBe(0);
  });

  it("a key not held (or held as revoked) asks the throttle first, and a throttled guess is never looked up", async () => {
    const known = new Map<string, VerifyOutcome>([["old", { ok: false, reason: "revoked" }]]);
    const open = countingThrottle();
    const lookups = { n: 0 };
    const s = new ApiKeyStrategy(service(known, lookups), open.throttle, metrics());
    await expect(s.verify({ kind: "api_key", key: "old", via: "x-api-key" }, request)).rejects.toMatchObject({
      code: "api_key_revoked",
    });
    await expect(s.verify({ kind: "api_key", key: "guess", via: "x-api-key" }, request)).rejects.toMatchObject({
      code: "invalid_api_key",
    });
    expect(open.calls).toEqual({ check: 2, fail: 2 });
    expect(lookups.n).toBe(2);

    const shut = countingThrottle({ throttled: true, lookup: false });
    const none = { n: 0 };
    const t = new ApiKeyStrategy(service(known, none), shut.throttle, metrics());
    await expect(t.verify({ kind: "api_key", key: "guess", via: "x-api-key" }, request)).rejects.toMatchObject({
      code: "rate_limited",
    });
    expect(none.n).toBe(0);
  });
});
