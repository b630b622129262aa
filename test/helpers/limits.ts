import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { type App, type BuildOptions, buildApp } from "../../src/app.ts";
import { ApiKeysRepo } from "../../src/modules/api-keys/api-keys.repo.ts";
import { generateKey } from "../../src/modules/api-keys/key-format.ts";
import type { Principal, Scope, Tier } from "../../src/platform/auth.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { customers } from "../../src/platform/db/schema/index.ts";
import { errors } from "../../src/platform/errors.ts";
import type { ModuleOptions } from "../../src/platform/module.ts";
import type { ObjectStore } from "../../src/platform/object-store.ts";
import type { RedisHandle } from "../../src/platform/redis.ts";
import { type IsolatedDatabase, isolatedDatabase, testConfig, testRedis } from "./app.ts";

/** A clock tests move by hand. */
export class FakeClock {
  t: number;
  constructor(start = Date.UTC(2026, 10, 26, 12, 0, 0)) {
    this.t = start;
  }
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** An inference route for tests and benchmarks: API-key or session auth, then the meter. */
export const probePlugin: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  app.get(
    "/probe",
    {
      preHandler: [platform.auth.require({ scopes: ["inference"] }), platform.limits.meter()],
      schema: { tags: ["meta"], summary: "test probe", hide: true },
    },
    async (request) => ({ ok: true, customer: request.principal?.customerId }),
  );
  app.post(
    "/probe",
    {
      preHandler: [platform.auth.require({ scopes: ["inference"] }), platform.limits.meter()],
      schema: {
        tags: ["meta"],
        summary: "test probe with a body",
        hide: true,
        body: {
          type: "object",
          required: ["n"],
          properties: { n: { type: "integer" } },
          additionalProperties: false,
        },
      },
    },
    async () => ({ ok: true }),
  );
};

/**
 * Test sessions: these route tests seed customers directly (no user rows), so they replace the
 * JWT strategy with `Bearer owner:<customerId>` standing for an account owner's session (scopes
 * inference+admin). test/api-keys/owner-session.test.ts covers the same routes with real
 * registration, sign-in and JWTs.
 */
export function installTestSessions(app: App): void {
  app.platform.auth.useJwt({
    async verify(credential) {
      if (credential.kind !== "jwt") throw errors.invalidToken();
      const m = /^owner:([0-9a-f-]{36})$/.exec(credential.token);
      if (m === null) throw errors.invalidToken();
      const principal: Principal = {
        kind: "user",
        customerId: m[1] as string,
        userId: null,
        apiKeyId: null,
        scopes: ["inference", "admin"],
        isSuperuser: false,
        tier: "free",
      };
      return principal;
    },
  });
}

export interface LimitsContext {
  readonly app: App;
  readonly database: Database;
  readonly redis: RedisHandle;
  readonly clock: FakeClock;
  close(): Promise<void>;
}

export interface LimitsAppOptions {
  readonly env?: Record<string, string>;
  readonly database?: Database;
  readonly redis?: RedisHandle;
  readonly redisKeyPrefix?: string;
  readonly clock?: FakeClock;
  readonly realClock?: boolean;
  /** Instead of the folder store under the test's DATA_DIR (e.g. a failing one, or S3). */
  readonly objectStore?: ObjectStore;
  /** How customer model endpoints resolve (the SSRF guard's DNS; tests never use the real one). */
  readonly egressResolver?: BuildOptions["egressResolver"];
  /** Where the app's log lines go (LOG_LEVEL in `env` decides which). */
  readonly logStream?: Writable;
}

export async function buildLimitsApp(options: LimitsAppOptions = {}): Promise<LimitsContext> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-limits-"));
  const config = testConfig(options.env, dataDir);
  let isolated: IsolatedDatabase | undefined;
  if (options.database === undefined) isolated = await isolatedDatabase();
  const database = options.database ?? (isolated as IsolatedDatabase).database;
  const ownsRedis = options.redis === undefined;
  const redis = options.redis ?? testRedis(options.redisKeyPrefix);
  const clock = options.clock ?? new FakeClock();
  const app = await buildApp(config, {
    database,
    redis,
    migrate: false,
    plugins: [probePlugin],
    ...(options.objectStore === undefined ? {} : { objectStore: options.objectStore }),
    ...(options.egressResolver === undefined ? {} : { egressResolver: options.egressResolver }),
    ...(options.logStream === undefined ? {} : { logStream: options.logStream }),
    ...(options.realClock === true ? {} : { now: clock.now }),
  });
  installTestSessions(app);
  // Start on the shared limiter, not on the fallback used while Redis is still connecting.
  for (let i = 0; i < 100 && redis.client !== null && redis.client.status !== "ready"; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  let closed = false;
  return {
    app,
    database,
    redis,
    clock,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      if (ownsRedis) await redis.close();
      await isolated?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface CustomerSeed {
  readonly tier?: Tier;
  readonly perMinute?: number | null;
  readonly perDay?: number | null;
  readonly perMonth?: number | null;
}

let seq = 0;
export async function seedCustomer(database: Database, seed: CustomerSeed = {}): Promise<string> {
  seq++;
  const [row] = await database.db
    .insert(customers)
    .values({
      name: `customer ${seq}`,
      email: `c${seq}-${Math.random().toString(36).slice(2)}@example.com`,
      tier: seed.tier ?? "free",
      rateLimitPerMinute: seed.perMinute ?? null,
      quotaPerDay: seed.perDay ?? null,
      quotaPerMonth: seed.perMonth ?? null,
    })
    .returning();
  if (row === undefined) throw new Error("no customer");
  return row.id;
}

/** Inserts a key directly (bypassing the API) and returns its plaintext and id. */
export async function seedKey(
  database: Database,
  customerId: string,
  opts: { scopes?: Scope[]; expiresAt?: Date | null; name?: string } = {},
): Promise<{ key: string; id: string }> {
  const k = generateKey();
  const row = await new ApiKeysRepo(database.db).insert({
    customerId,
    name: opts.name ?? "seeded",
    keyHash: k.hash,
    displayPrefix: k.displayPrefix,
    scopes: opts.scopes ?? ["inference"],
    expiresAt: opts.expiresAt ?? null,
    createdByUserId: null,
  });
  return { key: k.key, id: row.id };
}

export const owner = (customerId: string) => ({ authorization: `Bearer owner:${customerId}` });
export const xKey = (key: string) => ({ "x-api-key": key });

export const hasRedis = process.env.TEST_REDIS_URL !== undefined;
