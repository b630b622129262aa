import { lt, sql } from "drizzle-orm";
import type { Db } from "../../platform/db/client.ts";
import { revokedAccessTokens } from "../../platform/db/schema/index.ts";
import type { RedisHandle } from "../../platform/redis.ts";

/**
 * Logout deny-list of access-token ids (`jti`), each kept until the token's own expiry.
 *
 * Redis when configured (`SET <prefix>auth:deny:<jti> 1 EX <ttl>`, shared by every instance);
 * the `revoked_access_tokens` table when Redis is absent, or failing at that moment. Revocations
 * made on this instance are also remembered in process, so a logout holds here even when both
 * stores fail. Known gap, documented in docs/auth.md: a logout written to the database during a
 * Redis outage is not seen by instances reading Redis after it recovers; access tokens live
 * minutes, and the refresh family is revoked in the database regardless.
 *
 * Without Redis a "not revoked" answer from the database is reused for 2 s per token (one query
 * per request cost about half the throughput of GET /auth/me, see bench/README.md), so another
 * instance honours a logout within 2 s; this instance honours its own at once.
 */
export class AccessTokenDenyList {
  private readonly db: Db;
  private readonly redis: RedisHandle;
  private readonly local = new Map<string, number>();
  /** Database answers "not revoked" reused for `negativeTtlMs` (Redis answers are never cached). */
  private readonly negative = new Map<string, number>();
  private readonly negativeTtlMs: number;

  constructor(db: Db, redis: RedisHandle, options: { negativeTtlMs?: number } = {}) {
    this.db = db;
    this.redis = redis;
    this.negativeTtlMs = options.negativeTtlMs ?? 2_000;
  }

  private key(jti: string): string {
    return `${this.redis.keyPrefix}auth:deny:${jti}`;
  }

  /** `exp` in seconds since the epoch. */
  async add(jti: string, exp: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(exp - Date.now() / 1000));
    this.remember(jti, exp);
    this.negative.delete(jti);
    const client = this.redis.client;
    if (client !== null) {
      try {
        await client.set(this.key(jti), "1", "EX", ttl);
        return;
      } catch {
        // fall through to the database
      }
    }
    await this.db
      .insert(revokedAccessTokens)
      .values({ jti, expiresAt: new Date(exp * 1000) })
      .onConflictDoNothing();
  }

  async has(jti: string): Promise<boolean> {
    const localExp = this.local.get(jti);
    if (localExp !== undefined && localExp * 1000 > Date.now()) return true;
    const client = this.redis.client;
    if (client !== null) {
      try {
        return (await client.exists(this.key(jti))) === 1;
      } catch {
        // fall through to the database
      }
    }
    const now = Date.now();
    const cachedUntil = this.negative.get(jti);
    if (cachedUntil !== undefined && cachedUntil > now) return false;
    const rows = await this.db
      .select({ jti: revokedAccessTokens.jti })
      .from(revokedAccessTokens)
      .where(sql`${revokedAccessTokens.jti} = ${jti} and ${revokedAccessTokens.expiresAt} > now()`)
      .limit(1);
    if (rows.length > 0) return true;
    if (this.negativeTtlMs > 0) {
      if (this.negative.size >= 100_000) this.negative.clear();
      this.negative.set(jti, now + this.negativeTtlMs);
    }
    return false;
  }

  /** Drops expired rows; run periodically. */
  async sweep(): Promise<number> {
    const now = Date.now();
    for (const [jti, exp] of this.local) if (exp * 1000 <= now) this.local.delete(jti);
    for (const [jti, until] of this.negative) if (until <= now) this.negative.delete(jti);
    const rows = await this.db
      .delete(revokedAccessTokens)
      .where(lt(revokedAccessTokens.expiresAt, new Date()))
      .returning({ jti: revokedAccessTokens.jti });
    return rows.length;
  }

  private remember(jti: string, exp: number): void {
    if (this.local.size >= 100_000) {
      const first = this.local.keys().next().value;
      if (first !== undefined) this.local.delete(first);
    }
    this.local.set(jti, exp);
  }
}
