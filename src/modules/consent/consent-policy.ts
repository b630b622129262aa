/**
 * Consent tiers and the permissions they allow (docs/privacy.md, "Consent"). Pure functions:
 * what a stored version allows at an instant, and whether a requested version stays within its
 * tier. Framework-free and database-free, so the rules are unit-tested on their own.
 */

export const CONSENT_TIERS = ["none", "basic", "analytics", "research"] as const;
export type ConsentTier = (typeof CONSENT_TIERS)[number];
export const ANONYMIZATION_LEVELS = ["none", "partial", "full"] as const;
export type Anonymization = (typeof ANONYMIZATION_LEVELS)[number];
export const PERMISSIONS = ["store_instructions", "store_images", "store_embeddings", "use_for_training"] as const;
export type Permission = (typeof PERMISSIONS)[number];
export type Permissions = Readonly<Record<Permission, boolean>>;

export const MIN_RETENTION_DAYS = 1;
export const MAX_RETENTION_DAYS = 3650;

/** What each tier allows at most (and grants when the request names no permissions). */
export const TIER_PERMISSIONS: Readonly<Record<ConsentTier, Permissions>> = {
  none: { store_instructions: false, store_images: false, store_embeddings: false, use_for_training: false },
  basic: { store_instructions: true, store_images: false, store_embeddings: false, use_for_training: false },
  analytics: { store_instructions: true, store_images: false, store_embeddings: true, use_for_training: false },
  research: { store_instructions: true, store_images: true, store_embeddings: true, use_for_training: true },
};

/** Retention when a version names none. */
export const TIER_RETENTION_DAYS: Readonly<Record<ConsentTier, number>> = {
  none: 30,
  basic: 90,
  analytics: 365,
  research: 730,
};

/** One stored version, as the policy needs it. */
export interface ConsentVersion {
  readonly version: number;
  readonly tier: ConsentTier;
  readonly permissions: Permissions;
  readonly anonymization: Anonymization;
  readonly retentionDays: number;
  readonly expiresAt: Date | null;
  readonly grantedAt: Date;
  readonly withdrawn: boolean;
}

/**
 * `default`: no version yet, CONSENT_DEFAULT_TIER applies; `active`: the version applies;
 * `expired`: its expires_at has passed (behaves as `none`); `withdrawn`: a withdrawal version.
 */
export type ConsentState = "default" | "active" | "expired" | "withdrawn";

export interface EffectiveConsent {
  readonly state: ConsentState;
  readonly tier: ConsentTier;
  readonly permissions: Permissions;
  readonly anonymization: Anonymization;
  readonly retentionDays: number;
}

export function tierRank(tier: ConsentTier): number {
  return CONSENT_TIERS.indexOf(tier);
}

/** Permissions a tier gives, narrowed by what the version says; anonymization forbids instruction text. */
function narrowed(tier: ConsentTier, asked: Permissions, anonymization: Anonymization): Permissions {
  const allowed = TIER_PERMISSIONS[tier];
  return {
    store_instructions: allowed.store_instructions && asked.store_instructions && anonymization === "none",
    store_images: allowed.store_images && asked.store_images,
    store_embeddings: allowed.store_embeddings && asked.store_embeddings,
    use_for_training: allowed.use_for_training && asked.use_for_training,
  };
}

/** What `latest` (the last version granted at or before `at`, or null) allows at `at`. */
export function effectiveConsent(
  latest: ConsentVersion | null,
  at: number,
  defaultTier: ConsentTier,
): EffectiveConsent {
  if (latest === null) {
    return {
      state: "default",
      tier: defaultTier,
      permissions: TIER_PERMISSIONS[defaultTier],
      anonymization: "none",
      retentionDays: TIER_RETENTION_DAYS[defaultTier],
    };
  }
  const expired = latest.expiresAt !== null && latest.expiresAt.getTime() <= at;
  if (latest.withdrawn || expired) {
    return {
      state: latest.withdrawn ? "withdrawn" : "expired",
      tier: "none",
      permissions: TIER_PERMISSIONS.none,
      anonymization: latest.anonymization,
      retentionDays: latest.retentionDays,
    };
  }
  return {
    state: "active",
    tier: latest.tier,
    permissions: narrowed(latest.tier, latest.permissions, latest.anonymization),
    anonymization: latest.anonymization,
    retentionDays: latest.retentionDays,
  };
}

/** The permissions a tier does not allow among those asked for (empty: within the tier). */
export function beyondTier(tier: ConsentTier, asked: Partial<Permissions>): Permission[] {
  const allowed = TIER_PERMISSIONS[tier];
  return PERMISSIONS.filter((p) => asked[p] === true && !allowed[p]);
}

/** The lowest tier that allows every permission asked for. */
export function lowestTierFor(asked: Partial<Permissions>): ConsentTier {
  return CONSENT_TIERS.find((t) => beyondTier(t, asked).length === 0) ?? "research";
}
