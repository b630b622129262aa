import { describe, expect, it } from "vitest";
import {
  beyondTier,
  type ConsentVersion,
  effectiveConsent,
  lowestTierFor,
  TIER_PERMISSIONS,
} from "./consent-policy.ts";

const T0 = Date.UTC(2026, 11, 1);
const version = (over: Partial<ConsentVersion> = {}): ConsentVersion => ({
  version: 1,
  tier: "basic",
  permissions: TIER_PERMISSIONS.basic,
  anonymization: "none",
  retentionDays: 90,
  expiresAt: null,
  grantedAt: new Date(T0),
  withdrawn: false,
  ...over,
});

describe("consent policy", () => {
  it("tiers grow: each allows what the one below does, plus its own", () => {
    expect(TIER_PERMISSIONS.none).toEqual({
      store_instructions: false,
      store_images: false,
      store_embeddings: false,
      use_for_training: false,
    });
    expect(TIER_PERMISSIONS.basic.store_instructions).toBe(true);
    expect(TIER_PERMISSIONS.analytics).toMatchObject({ store_embeddings: true, store_images: false });
    expect(Object.values(TIER_PERMISSIONS.research).every(Boolean)).toBe(true);
  });

  it("no record: the configured default tier", () => {
    expect(effectiveConsent(null, T0, "basic")).toMatchObject({ state: "default", tier: "basic", retentionDays: 90 });
    expect(effectiveConsent(null, T0, "none").permissions.store_instructions).toBe(false);
  });

  it("a version applies its tier narrowed by its permissions, never widened", () => {
    const narrowed = version({ permissions: { ...TIER_PERMISSIONS.basic, store_instructions: false } });
    expect(effectiveConsent(narrowed, T0, "basic").permissions.store_instructions).toBe(false);
    // A stored version claiming more than its tier (e.g. written by hand) still gets only the tier.
    const claims = version({ permissions: TIER_PERMISSIONS.research });
    expect(effectiveConsent(claims, T0, "basic").permissions).toEqual(TIER_PERMISSIONS.basic);
  });

  it("anonymization partial or full forbids instruction text", () => {
    for (const anonymization of ["partial", "full"] as const) {
      const v = version({ tier: "research", permissions: TIER_PERMISSIONS.research, anonymization });
      expect(effectiveConsent(v, T0, "basic").permissions).toMatchObject({
        store_instructions: false,
        store_images: true,
      });
    }
  });

  it("expired (at or after expires_at) and withdrawn behave as none", () => {
    const v = version({ expiresAt: new Date(T0 + 1000) });
    expect(effectiveConsent(v, T0 + 999, "basic").state).toBe("active");
    expect(effectiveConsent(v, T0 + 1000, "basic")).toMatchObject({
      state: "expired",
      tier: "none",
      permissions: TIER_PERMISSIONS.none,
    });
    expect(effectiveConsent(version({ tier: "none", withdrawn: true }), T0, "research")).toMatchObject({
      state: "withdrawn",
      tier: "none",
    });
  });

  it("names what a request asks beyond its tier, and the lowest tier that gives it", () => {
    expect(beyondTier("basic", { store_instructions: true, store_embeddings: true, use_for_training: false })).toEqual([
      "store_embeddings",
    ]);
    expect(beyondTier("research", { store_images: true, use_for_training: true })).toEqual([]);
    expect(beyondTier("none", { store_instructions: false })).toEqual([]);
    expect(lowestTierFor({ store_embeddings: true })).toBe("analytics");
    expect(lowestTierFor({ store_images: true })).toBe("research");
    expect(lowestTierFor({})).toBe("none");
  });
});
