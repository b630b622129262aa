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
 */
export class AccessTokenDenyList {
  private readonly db: Db;
  private readonly redis: RedisHandle;
  private readonly local = new Map<string, number>();

  constructor(db: Db, redis: RedisHandle) {
    this.db = db;
    this.redis = redis;
  }

  private key(jti: string): string {
    return `${this.redis.keyPrefix}auth:deny:${jti}`;
  }

  /** `exp` in seconds since the epoch. */
  async add(jti: string, exp: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(exp - Date.now() / 1000));
    this.remember(jti, exp);
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
    const rows = await this.db
      .select({ jti: revokedAccessTokens.jti })
      .from(revokedAccessTokens)
      .where(sql`${revokedAccessTokens.jti} = ${jti} and ${revokedAccessTokens.expiresAt} > now()`)
      .limit(1);
    return rows.length > 0;
  }

  /** Drops expired rows; run periodically. */
  async sweep(): Promise<number> {
    const now = Date.now();
    for (const [jti, exp] of this.local) if (exp * 1000 <= now) this.local.delete(jti);
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
