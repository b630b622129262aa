import type { ConsentRow } from "../../platform/db/schema/index.ts";
import { errors, type FieldError } from "../../platform/errors.ts";
import { SwrCache } from "../../platform/swr-cache.ts";
import type { ConsentDraft, ConsentRepo } from "./consent.repo.ts";
import {
  type Anonymization,
  beyondTier,
  type ConsentTier,
  type ConsentVersion,
  type EffectiveConsent,
  effectiveConsent,
  lowestTierFor,
  type Permission,
  type Permissions,
  TIER_PERMISSIONS,
  TIER_RETENTION_DAYS,
} from "./consent-policy.ts";

/** Invalidation topic: a customer's consent changed (payload: the customer id). */
export const CONSENT_TOPIC = "consent";

/** What the service needs of platform/invalidation.ts. */
export interface ConsentInvalidation {
  on(topic: string, handler: (id: string) => void): void;
  onReset(handler: () => void): void;
  publish(topic: string, id: string): Promise<void>;
}

/** Who asks for a change, and from where (stored on the version and in the audit entry). */
export interface ConsentActor {
  readonly userId: string | null;
  readonly apiKeyId: string | null;
  readonly customerId: string;
  readonly ip: string | null;
  readonly requestId: string | null;
  /** Superuser acting on another customer's consent (admin routes). */
  readonly admin: boolean;
}

/** A requested version: everything but the tier may be left out (tier defaults apply). */
export interface ConsentInput {
  readonly tier: ConsentTier;
  readonly permissions?: Partial<Permissions> | undefined;
  readonly anonymization?: Anonymization | undefined;
  readonly retentionDays?: number | undefined;
  readonly expiresAt?: Date | null | undefined;
  readonly policyVersion: string;
}

/** A PATCH: only the fields given change; the rest come from the current version. */
export type ConsentPatch = Partial<ConsentInput>;

/** What an inference's log row may keep (the InferenceRunner's ConsentGate). */
export interface RecordingPolicy {
  readonly storeInstructions: boolean;
  /** Keep the camera image in the object store (never under anonymization `full`). */
  readonly storeImages: boolean;
  /** Keep the image's thumbnail embedding in context_metadata (never under anonymization `full`). */
  readonly storeEmbeddings: boolean;
  readonly anonymization: Anonymization;
}

export interface ConsentView {
  readonly at: Date;
  readonly effective: EffectiveConsent;
  readonly record: ConsentRow | null;
}

export interface ConsentServiceOptions {
  readonly repo: ConsentRepo;
  readonly invalidation: ConsentInvalidation;
  readonly now: () => number;
  readonly defaultTier: ConsentTier;
  readonly cacheFreshMs: number;
  readonly maxCachedCustomers?: number;
  readonly onRefreshError?: (error: unknown) => void;
}

export function toVersion(row: ConsentRow): ConsentVersion {
  return {
    version: row.version,
    tier: row.tier,
    permissions: {
      store_instructions: row.storeInstructions,
      store_images: row.storeImages,
      store_embeddings: row.storeEmbeddings,
      use_for_training: row.useForTraining,
    },
    anonymization: row.anonymization,
    retentionDays: row.retentionDays,
    expiresAt: row.expiresAt,
    grantedAt: row.grantedAt,
    withdrawn: row.withdrawn,
  };
}

/**
 * Consent versions: reading what applies (now or at any past instant), appending versions
 * (grant, change, withdrawal) and the per-customer cache the inference path reads. The cache
 * holds each customer's latest version for `cacheFreshMs` (then refreshes it in the
 * background); a change drops it on every instance at once through the invalidation bus. Expiry
 * is evaluated at each read, so a cached version that expires stops applying on time.
 */
export class ConsentService {
  private readonly o: ConsentServiceOptions;
  private readonly cache: SwrCache<ConsentVersion | null>;

  constructor(o: ConsentServiceOptions) {
    this.o = o;
    this.cache = new SwrCache<ConsentVersion | null>({
      freshMs: o.cacheFreshMs,
      staleMs: o.cacheFreshMs * 2,
      maxEntries: o.maxCachedCustomers ?? 100_000,
      now: o.now,
      load: async (id) => {
        const row = await o.repo.latest(id);
        return row === null ? null : toVersion(row);
      },
      ...(o.onRefreshError === undefined ? {} : { onRefreshError: o.onRefreshError }),
    });
    o.invalidation.on(CONSENT_TOPIC, (id) => this.cache.delete(id));
    o.invalidation.onReset(() => this.cache.clear());
  }

  get defaultTier(): ConsentTier {
    return this.o.defaultTier;
  }

  /**
   * The hot path: may this customer's instruction text be stored now? From the cache
   * (synchronously) when it holds the customer, else one load shared by concurrent callers.
   */
  storesInstructions(customerId: string): boolean | Promise<boolean> {
    const cached = this.cache.get(customerId);
    const decide = (v: ConsentVersion | null) =>
      effectiveConsent(v, this.o.now(), this.o.defaultTier).permissions.store_instructions;
    return cached instanceof Promise ? cached.then(decide) : decide(cached);
  }

  /**
   * The hot path of every inference: what its log row may keep (instruction text, and the
   * anonymization level). Same cache and cost as `storesInstructions`.
   */
  recording(customerId: string): RecordingPolicy | Promise<RecordingPolicy> {
    const cached = this.cache.get(customerId);
    const decide = (v: ConsentVersion | null): RecordingPolicy => {
      const e = effectiveConsent(v, this.o.now(), this.o.defaultTier);
      const content = e.anonymization !== "full";
      return {
        storeInstructions: e.permissions.store_instructions,
        storeImages: content && e.permissions.store_images,
        storeEmbeddings: content && e.permissions.store_embeddings,
        anonymization: e.anonymization,
      };
    };
    return cached instanceof Promise ? cached.then(decide) : decide(cached);
  }

  /** What applies now, or at a past instant `at` (the version granted last before it, judged at it). */
  async view(customerId: string, at?: Date): Promise<ConsentView> {
    const instant = at ?? new Date(this.o.now());
    const row = await this.o.repo.latest(customerId, at === undefined ? undefined : instant);
    return {
      at: instant,
      record: row,
      effective: effectiveConsent(row === null ? null : toVersion(row), instant.getTime(), this.o.defaultTier),
    };
  }

  async customerExists(customerId: string): Promise<boolean> {
    return this.o.repo.customerExists(customerId);
  }

  async history(
    customerId: string,
    beforeVersion: number | undefined,
    limit: number,
  ): Promise<{ data: ConsentRow[]; next: number | null }> {
    const rows = await this.o.repo.history(customerId, beforeVersion, limit);
    const data = rows.slice(0, limit);
    const last = data[data.length - 1];
    return { data, next: rows.length > limit && last !== undefined ? last.version : null };
  }

  /** A new version with every field given (PUT, admin POST). Undefined: no such customer. */
  async grant(actor: ConsentActor, customerId: string, input: ConsentInput): Promise<ConsentRow | undefined> {
    this.check(input);
    return this.append(actor, customerId, actor.admin ? "consent.admin_grant" : "consent.grant", () =>
      this.draft(input, actor),
    );
  }

  /**
   * A new version from the current one with the given fields changed (admin PATCH). Omitted
   * permissions keep their current values while the tier stays, and take the new tier's defaults
   * when it changes. Without a current version the default tier is the base.
   */
  async change(actor: ConsentActor, customerId: string, patch: ConsentPatch): Promise<ConsentRow | undefined> {
    // Validate against the current version before locking; the transaction re-reads it.
    const current = await this.o.repo.latest(customerId);
    const merged = this.merge(current, patch);
    this.check(merged);
    return this.append(actor, customerId, "consent.admin_change", (previous) =>
      this.draft(this.merge(previous, patch), actor),
    );
  }

  /** Withdrawal (GDPR Art. 7(3)): a `none` version marked withdrawn. */
  async withdraw(actor: ConsentActor, customerId: string): Promise<ConsentRow | undefined> {
    return this.append(actor, customerId, actor.admin ? "consent.admin_withdraw" : "consent.withdraw", (previous) => ({
      ...this.draft(
        {
          tier: "none",
          policyVersion: previous?.policyVersion ?? "withdrawal",
          anonymization: previous?.anonymization ?? "none",
          retentionDays: previous?.retentionDays ?? TIER_RETENTION_DAYS.none,
          expiresAt: null,
        },
        actor,
      ),
      withdrawn: true,
    }));
  }

  /** Superuser reads are audited (who looked at whose consent, never the content). */
  async auditRead(actor: ConsentActor, customerId: string, what: string): Promise<void> {
    await this.o.repo.audit(customerId, this.auditEntry(actor, `consent.admin_${what}`));
  }

  private merge(current: ConsentRow | null, patch: ConsentPatch): ConsentInput {
    const base = current === null ? null : toVersion(current);
    const tier = patch.tier ?? base?.tier ?? this.o.defaultTier;
    const inherited = base !== null && base.tier === tier ? base.permissions : TIER_PERMISSIONS[tier];
    return {
      tier,
      permissions: { ...inherited, ...patch.permissions },
      anonymization: patch.anonymization ?? base?.anonymization ?? "none",
      retentionDays: patch.retentionDays ?? (base !== null && base.tier === tier ? base.retentionDays : undefined),
      expiresAt: patch.expiresAt === undefined ? (base?.expiresAt ?? null) : patch.expiresAt,
      policyVersion: patch.policyVersion ?? current?.policyVersion ?? "",
    };
  }

  /** 422 for a version that asks more than its tier allows, or that has already expired. */
  private check(input: ConsentInput): void {
    const problems: FieldError[] = [];
    const permissions = input.permissions ?? {};
    for (const p of beyondTier(input.tier, permissions)) {
      problems.push({
        in: "body",
        path: `/permissions/${p}`,
        message: `tier ${input.tier} does not allow ${p}; ask for tier ${lowestTierFor({ [p]: true })} or leave it false`,
      });
    }
    if (input.expiresAt instanceof Date && input.expiresAt.getTime() <= this.o.now()) {
      problems.push({ in: "body", path: "/expires_at", message: "must be in the future" });
    }
    if (input.policyVersion === "") {
      problems.push({
        in: "body",
        path: "/policy_version",
        message: "is required (no earlier version to take it from)",
      });
    }
    if (problems.length > 0) {
      throw errors.validation(
        problems,
        "Explicit permissions may narrow a consent tier, never widen it, and expires_at must be in the future.",
      );
    }
  }

  private draft(input: ConsentInput, actor: ConsentActor): ConsentDraft {
    const tierAllows = TIER_PERMISSIONS[input.tier];
    const asked = input.permissions ?? {};
    const perm = (p: Permission) => tierAllows[p] && (asked[p] ?? true);
    return {
      tier: input.tier,
      storeInstructions: perm("store_instructions"),
      storeImages: perm("store_images"),
      storeEmbeddings: perm("store_embeddings"),
      useForTraining: perm("use_for_training"),
      anonymization: input.anonymization ?? "none",
      retentionDays: input.retentionDays ?? TIER_RETENTION_DAYS[input.tier],
      expiresAt: input.expiresAt ?? null,
      grantedByUserId: actor.userId,
      grantedByApiKeyId: actor.apiKeyId,
      ip: actor.ip,
      policyVersion: input.policyVersion,
      withdrawn: false,
    };
  }

  private auditEntry(actor: ConsentActor, action: string) {
    return {
      actorUserId: actor.userId,
      actorCustomerId: actor.customerId,
      action,
      actorApiKeyId: actor.apiKeyId,
      requestId: actor.requestId,
      ip: actor.ip,
      details: {},
    };
  }

  private async append(
    actor: ConsentActor,
    customerId: string,
    action: string,
    build: (previous: ConsentRow | null) => ConsentDraft,
  ): Promise<ConsentRow | undefined> {
    const out = await this.o.repo.append(customerId, new Date(this.o.now()), build, this.auditEntry(actor, action));
    if (out === undefined) return undefined;
    await this.o.invalidation.publish(CONSENT_TOPIC, customerId);
    return out.row;
  }
}
