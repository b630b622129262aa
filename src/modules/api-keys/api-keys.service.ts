import type { Principal, Scope } from "../../platform/auth.ts";
import type { ApiKeyRow } from "../../platform/db/schema/index.ts";
import { errors, type FieldError } from "../../platform/errors.ts";
import type { InvalidationBus } from "../../platform/invalidation.ts";
import { type Suspension, suspensionOf } from "../../platform/suspension.ts";
import type { CustomerLimitsCache } from "../rate-limit/customer-limits.ts";
import { CUSTOMER_TOPIC } from "../rate-limit/rate-limits.ts";
import type { ApiKeysRepo, KeyDefaultColumns } from "./api-keys.repo.ts";
import type { CachedKey, KeyCache, KeyCacheEntry } from "./key-cache.ts";
import { generateKey, hashKey, isWellFormedKey } from "./key-format.ts";
import type { LastUsedTracker } from "./last-used.ts";

/** Invalidation topic: one key (by hash) was revoked or changed. */
export const KEY_TOPIC = "api_key";

export type KeyStatus = "active" | "expired" | "revoked" | "rotating";

export type VerifyFailure = "malformed" | "unknown" | "revoked" | "expired";
export type VerifyOutcome =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly reason: VerifyFailure }
  /** A valid key of a suspended customer (not a guess: never counted against the caller's IP). */
  | { readonly ok: false; readonly reason: "suspended"; readonly suspension: Suspension };

export interface KeyView {
  readonly row: ApiKeyRow;
  readonly status: KeyStatus;
}

export interface CreateKeyInput {
  readonly name: string;
  readonly scopes?: readonly Scope[] | undefined;
  readonly expiresAt?: Date | undefined;
  /** Inference defaults; null or undefined: none. */
  readonly robotId?: string | null | undefined;
  readonly model?: string | null | undefined;
  readonly unnormKey?: string | null | undefined;
}

/** undefined: unchanged; null: cleared. */
export interface UpdateKeyInput {
  readonly name?: string | undefined;
  readonly scopes?: readonly Scope[] | undefined;
  readonly robotId?: string | null | undefined;
  readonly model?: string | null | undefined;
  readonly unnormKey?: string | null | undefined;
}

/** What key defaults are checked against: the models this server serves. */
export interface ModelCatalogue {
  readonly defaultModel: string;
  /**
   * The ids the customer's keys may use: the service's models it may use and its own registered
   * ones (a model restricted to other customers, or another customer's own, is left out).
   */
  modelIds(customerId: string): readonly string[];
  /**
   * The model's unnorm keys as the customer's requests resolve the id (its own model of that id
   * first); undefined for an unknown model, one restricted to other customers or another customer's.
   */
  unnormKeysOf(model: string, customerId: string): readonly string[] | undefined;
}

export interface ApiKeysServiceOptions {
  readonly repo: ApiKeysRepo;
  readonly cache: KeyCache;
  readonly lastUsed: LastUsedTracker;
  readonly customerLimits: CustomerLimitsCache;
  readonly invalidation: InvalidationBus;
  readonly models: ModelCatalogue;
  readonly now: () => number;
  readonly maxKeysPerCustomer: number;
  readonly listLimit?: number;
}

export function keyStatus(row: Pick<ApiKeyRow, "revokedAt" | "expiresAt">, now: number): KeyStatus {
  if (row.revokedAt !== null && row.revokedAt.getTime() <= now) return "revoked";
  if (row.expiresAt !== null && row.expiresAt.getTime() <= now) return "expired";
  if (row.revokedAt !== null) return "rotating";
  return "active";
}

/** API key lifecycle and verification. Framework-free: routes and the auth strategy call it. */
export class ApiKeysService {
  private readonly o: ApiKeysServiceOptions;

  constructor(o: ApiKeysServiceOptions) {
    this.o = o;
    o.invalidation.on(KEY_TOPIC, (hash) => o.cache.invalidateHash(hash));
    o.invalidation.on(CUSTOMER_TOPIC, (id) => o.cache.invalidateCustomer(id));
    o.invalidation.onReset(() => o.cache.clear());
  }

  /** Loader for the key cache: one query for the key, its customer's tier and limits. */
  async load(hash: string): Promise<KeyCacheEntry> {
    const row = await this.o.repo.findForVerification(hash);
    if (row === undefined) return { kind: "missing" };
    this.o.customerLimits.prime(row.customerId, row.tier, row);
    return {
      kind: "key",
      customerId: row.customerId,
      expiresAt: row.expiresAt?.getTime() ?? null,
      revokedAt: row.revokedAt?.getTime() ?? null,
      suspension: suspensionOf(row),
      lastUsedMinute: 0,
      principal: Object.freeze({
        kind: "api_key",
        customerId: row.customerId,
        userId: null,
        apiKeyId: row.id,
        scopes: Object.freeze([...row.scopes]),
        isSuperuser: false,
        tier: row.tier,
        keyDefaults: Object.freeze({ robotId: row.robotId, model: row.model, unnormKey: row.unnormKey }),
      }),
    };
  }

  /** Synchronous when the key is cached (the hot path); a promise on a miss. */
  verify(key: string): VerifyOutcome | Promise<VerifyOutcome> {
    if (!isWellFormedKey(key)) return { ok: false, reason: "malformed" };
    const entry = this.o.cache.get(hashKey(key));
    return entry instanceof Promise ? entry.then((e) => this.judge(e)) : this.judge(entry);
  }

  /**
   * The outcome for a key this instance has cached as a real key (valid, revoked, expired or
   * suspended), without any lookup; undefined for a key it does not know (unknown hashes too).
   */
  verifyKnown(key: string): VerifyOutcome | undefined {
    if (!isWellFormedKey(key)) return undefined;
    const entry = this.o.cache.peek(hashKey(key));
    return entry === undefined || entry.kind === "missing" ? undefined : this.judge(entry);
  }

  private judge(entry: KeyCacheEntry): VerifyOutcome {
    if (entry.kind === "missing") return { ok: false, reason: "unknown" };
    const now = this.o.now();
    if (entry.revokedAt !== null && entry.revokedAt <= now) return { ok: false, reason: "revoked" };
    if (entry.expiresAt !== null && entry.expiresAt <= now) return { ok: false, reason: "expired" };
    // Not touched: a suspended customer's key use is refused before anything records it.
    if (entry.suspension !== null) return { ok: false, reason: "suspended", suspension: entry.suspension };
    this.touch(entry, now);
    return { ok: true, principal: entry.principal };
  }

  private touch(entry: CachedKey, now: number): void {
    const minute = now - (now % 60_000);
    if (entry.lastUsedMinute === minute) return;
    entry.lastUsedMinute = minute;
    this.o.lastUsed.mark(entry.principal.apiKeyId as string, minute);
  }

  async list(customerId: string): Promise<KeyView[]> {
    const rows = await this.o.repo.list(customerId, this.o.listLimit ?? 500);
    const now = this.o.now();
    return rows.map((row) => ({ row, status: keyStatus(row, now) }));
  }

  async create(principal: Principal, input: CreateKeyInput): Promise<{ view: KeyView; key: string }> {
    const now = this.o.now();
    if (input.expiresAt !== undefined && input.expiresAt.getTime() <= now) {
      throw errors.validation([{ in: "body", path: "/expires_at", message: "must be in the future" }]);
    }
    const defaults = this.checkDefaults(principal.customerId, {
      robotId: input.robotId ?? null,
      model: input.model ?? null,
      unnormKey: input.unnormKey ?? null,
    });
    const usable = await this.o.repo.countUsable(principal.customerId, new Date(now));
    if (usable >= this.o.maxKeysPerCustomer) {
      throw errors.conflict(`A customer may hold at most ${this.o.maxKeysPerCustomer} keys; revoke one first.`);
    }
    const generated = generateKey("live");
    const row = await this.o.repo.insert({
      customerId: principal.customerId,
      name: input.name,
      keyHash: generated.hash,
      displayPrefix: generated.displayPrefix,
      scopes: dedupe(input.scopes ?? ["inference"]),
      expiresAt: input.expiresAt ?? null,
      createdByUserId: principal.kind === "user" ? principal.userId : null,
      ...defaults,
    });
    return { view: { row, status: keyStatus(row, now) }, key: generated.key };
  }

  async update(customerId: string, id: string, changes: UpdateKeyInput): Promise<KeyView> {
    let defaults: KeyDefaultColumns | undefined;
    if (changes.robotId !== undefined || changes.model !== undefined || changes.unnormKey !== undefined) {
      // Checked as they will stand: a new model must still have the key's unnorm_key.
      const current = await this.o.repo.get(customerId, id);
      if (current === undefined) throw errors.notFound("API key");
      defaults = this.checkDefaults(customerId, {
        robotId: changes.robotId === undefined ? current.robotId : changes.robotId,
        model: changes.model === undefined ? current.model : changes.model,
        unnormKey: changes.unnormKey === undefined ? current.unnormKey : changes.unnormKey,
      });
    }
    const row = await this.o.repo.update(
      customerId,
      id,
      {
        name: changes.name,
        scopes: changes.scopes === undefined ? undefined : dedupe(changes.scopes),
        ...(defaults === undefined ? {} : { defaults }),
      },
      new Date(this.o.now()),
    );
    if (row === undefined) throw errors.notFound("API key");
    if (changes.scopes !== undefined || defaults !== undefined)
      await this.o.invalidation.publish(KEY_TOPIC, row.keyHash);
    return { row, status: keyStatus(row, this.o.now()) };
  }

  /**
   * The model must be served here to the key's customer (API keys are never superusers); the
   * unnorm_key must be one of its model's (the default model's when none).
   */
  private checkDefaults(customerId: string, d: KeyDefaultColumns): KeyDefaultColumns {
    const problems: FieldError[] = [];
    const models = this.o.models;
    if (d.model !== null && models.unnormKeysOf(d.model, customerId) === undefined) {
      problems.push({
        in: "body",
        path: "/model",
        message: `is not a model of this server; one of ${models.modelIds(customerId).join(", ")}`,
      });
    } else if (d.unnormKey !== null) {
      const model = d.model ?? models.defaultModel;
      const keys = models.unnormKeysOf(model, customerId) ?? [];
      if (!keys.includes(d.unnormKey)) {
        problems.push({
          in: "body",
          path: "/unnorm_key",
          message: `is not an unnorm_key of model ${model}; one of ${keys.join(", ")}`,
        });
      }
    }
    if (problems.length > 0) throw errors.validation(problems);
    return d;
  }

  async revoke(customerId: string, id: string): Promise<KeyView> {
    const row = await this.o.repo.revoke(customerId, id, new Date(this.o.now()));
    if (row === undefined) throw errors.notFound("API key");
    await this.o.invalidation.publish(KEY_TOPIC, row.keyHash);
    return { row, status: keyStatus(row, this.o.now()) };
  }

  async rotate(
    principal: Principal,
    id: string,
    graceSeconds: number,
  ): Promise<{ old: KeyView; created: KeyView; key: string }> {
    const now = this.o.now();
    const generated = generateKey("live");
    const result = await this.o.repo.rotate(
      principal.customerId,
      id,
      {
        keyHash: generated.hash,
        displayPrefix: generated.displayPrefix,
        createdByUserId: principal.kind === "user" ? principal.userId : null,
      },
      new Date(now),
      new Date(now + graceSeconds * 1000),
    );
    if (result === undefined) throw errors.notFound("API key");
    if (result === "not_active")
      throw errors.conflict("Only an active key can be rotated (this one is revoked, expired or already rotating).");
    await this.o.invalidation.publish(KEY_TOPIC, result.old.keyHash);
    return {
      old: { row: result.old, status: keyStatus(result.old, now) },
      created: { row: result.created, status: keyStatus(result.created, now) },
      key: generated.key,
    };
  }

  /** Test-mode and tooling helper: the customer's cached keys are dropped everywhere. */
  async invalidateCustomer(customerId: string): Promise<void> {
    await this.o.invalidation.publish(CUSTOMER_TOPIC, customerId);
  }
}

function dedupe(scopes: readonly Scope[]): Scope[] {
  return [...new Set(scopes)];
}
