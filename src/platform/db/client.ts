import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePg } from "drizzle-orm/node-postgres";
import { migrate as migratePg } from "drizzle-orm/node-postgres/migrator";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import pg from "pg";
import { ADVISORY_LOCKS } from "./advisory-locks.ts";
import { acquireDataDirLock } from "./data-dir-lock.ts";
import { ReadRouter } from "./replica.ts";
import * as schema from "./schema/index.ts";
import { withWellFormedParams } from "./well-formed-params.ts";

export type Schema = typeof schema;
/** The query builder both drivers share; services depend on this, never on a driver. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export const MIGRATIONS_DIR = fileURLToPath(new URL("../../../migrations", import.meta.url));

/** The advisory lock that serialises migrations across instances. */
const MIGRATION_LOCK_ID = ADVISORY_LOCKS.migrations;

export interface Database {
  readonly kind: "pglite" | "postgres";
  readonly db: Db;
  /**
   * The handle for read-only heavy queries (history, analytics, admin lists, exports): a drizzle
   * instance routed to the read replica (DATABASE_READ_URL) while it is usable, else to the
   * primary (replica.ts). Without a replica it is `db` itself. Never write through it, and keep
   * read-your-writes paths (a row fetched right after it was written) on `db`.
   */
  readonly read: Db;
  /**
   * `read` once the replica has replayed every write committed on the primary so far (for a job
   * that writes, then reads it back in bulk: an account export), else `db`. Waits up to
   * `timeoutMs` (default 2000) for the replica to catch up.
   */
  readAfterWrites(timeoutMs?: number): Promise<Db>;
  /** The replica's router and health (state, metrics); undefined without DATABASE_READ_URL. */
  readonly replica?: ReadRouter;
  /** Human-readable location with no credentials, for the startup line. */
  readonly description: string;
  /** Resolves when a trivial query succeeds within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<void>;
  migrate(): Promise<void>;
  /**
   * Runs `fn` while holding the session-level advisory lock `lockId` on a connection of its own,
   * so a long job is one instance at a time without keeping a transaction open: `fn`'s own
   * statements run on other connections, each its own short transaction. False (and `fn` not run)
   * when another session holds the lock.
   */
  withSessionLock(lockId: number, fn: () => Promise<void>): Promise<boolean>;
  /** Connection pool usage (PostgreSQL); undefined for embedded PGlite (one connection, no pool). */
  poolStats?(): PoolStats;
  close(): Promise<void>;
}

export interface PoolStats {
  readonly max: number;
  /** Open connections (busy + idle). */
  readonly total: number;
  readonly idle: number;
  /** Queries waiting for a connection. */
  readonly waiting: number;
}

export interface DatabaseOptions {
  /** postgres:// URL; undefined selects embedded PGlite. */
  readonly url?: string | undefined;
  /** Directory for the embedded database files; undefined keeps PGlite in memory (tests). */
  readonly dataDir?: string | undefined;
  /**
   * What opens the embedded database ("server", "cli migrate"), named in the refusal another
   * opener of the same DATA_DIR gets. Default "server".
   */
  readonly role?: string;
  readonly poolMax?: number;
  readonly statementTimeoutMs?: number;
  /** postgres:// URL of a streaming read replica (PostgreSQL only; ignored on PGlite). */
  readonly readUrl?: string | undefined;
  /** Replay lag above which reads go to the primary. Default 5000. */
  readonly readMaxLagMs?: number;
  /** Interval of the replica health check. Default 1000. */
  readonly readCheckMs?: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function redactUrl(url: string): string {
  const u = new URL(url);
  return `postgres://${u.hostname}${u.port ? `:${u.port}` : ""}${u.pathname}`;
}

export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  return options.url === undefined ? createPglite(options.dataDir, options.role ?? "server") : createPostgres(options);
}

/**
 * PGlite is one process's database: a second process on the same files writes into the void
 * (its changes are lost when the first one checkpoints). So whoever opens it holds DATA_DIR's
 * lock until close, and a second opener fails with DataDirLockedError (data-dir-lock.ts).
 */
async function createPglite(dataDir: string | undefined, role: string): Promise<Database> {
  if (dataDir === undefined) return wrapPglite(new PGlite(), "embedded PGlite (in memory)");
  const dir = path.join(dataDir, "pgdata");
  mkdirSync(dir, { recursive: true });
  const lock = acquireDataDirLock(dataDir, role);
  try {
    return await wrapPglite(new PGlite(dir), `embedded PGlite at ${dir}`, () => lock.release());
  } catch (e) {
    lock.release();
    throw e;
  }
}

/**
 * Wraps an existing PGlite instance (tests clone a migrated template instead of migrating each
 * time). `afterClose` runs once the client is closed (releases the DATA_DIR lock).
 */
export async function wrapPglite(client: PGlite, description: string, afterClose?: () => void): Promise<Database> {
  await client.waitReady;
  // PGlite mis-sizes parameters holding a lone surrogate (well-formed-params.ts).
  const db = drizzlePglite({ client: withWellFormedParams(client), schema });
  let closed = false;
  return {
    kind: "pglite",
    db: db as unknown as Db,
    read: db as unknown as Db,
    readAfterWrites: async () => db as unknown as Db,
    description,
    async ping(timeoutMs = 2_000) {
      if (closed || client.closed) throw new Error("database is closed");
      await withTimeout(client.query("select 1"), timeoutMs, "database ping");
    },
    async migrate() {
      await migratePglite(db, { migrationsFolder: MIGRATIONS_DIR });
    },
    // One session: the lock still keeps a second caller in this process out.
    async withSessionLock(lockId, fn) {
      const r = await client.query<{ ok: boolean }>("select pg_try_advisory_lock($1) as ok", [lockId]);
      if (r.rows[0]?.ok !== true) return false;
      try {
        await fn();
      } finally {
        await client.query("select pg_advisory_unlock($1)", [lockId]);
      }
      return true;
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        if (!client.closed) await client.close();
      } finally {
        afterClose?.();
      }
    },
  };
}

function createPool(url: string, options: DatabaseOptions, connectionTimeoutMillis: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolMax ?? 30,
    connectionTimeoutMillis,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 15_000,
    application_name: "vla-inference-api",
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on("error", () => {});
  return pool;
}

async function createPostgres(options: DatabaseOptions): Promise<Database> {
  const url = options.url as string;
  const pool = createPool(url, options, 5_000);
  const db = drizzlePg({ client: pool, schema });
  let replicaPool: pg.Pool | undefined;
  let router: ReadRouter | undefined;
  let read = db as unknown as Db;
  if (options.readUrl !== undefined) {
    // A replica that does not answer quickly is skipped (the read goes to the primary), not waited for.
    replicaPool = createPool(options.readUrl, options, 2_000);
    router = new ReadRouter({
      primary: pool,
      replica: replicaPool,
      maxLagMs: options.readMaxLagMs ?? 5_000,
      checkMs: options.readCheckMs ?? 1_000,
    });
    await router.start();
    read = drizzlePg({ client: router.pool, schema }) as unknown as Db;
  }
  let closed = false;
  return {
    kind: "postgres",
    db: db as unknown as Db,
    read,
    async readAfterWrites(timeoutMs = 2_000) {
      return router !== undefined && (await router.caughtUp(timeoutMs)) ? read : (db as unknown as Db);
    },
    ...(router === undefined ? {} : { replica: router }),
    description: `PostgreSQL ${redactUrl(url)} (pool max ${options.poolMax ?? 30})${
      options.readUrl === undefined ? "" : `, read replica ${redactUrl(options.readUrl)}`
    }`,
    poolStats: () => ({
      max: options.poolMax ?? 30,
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }),
    async ping(timeoutMs = 2_000) {
      if (closed) throw new Error("database is closed");
      await withTimeout(pool.query("select 1"), timeoutMs, "database ping");
    },
    async migrate() {
      // Several instances may start at once: one migrates, the others wait, then find nothing to do.
      const conn = await pool.connect();
      try {
        await conn.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
        try {
          await migratePg(drizzlePg({ client: conn, schema }), { migrationsFolder: MIGRATIONS_DIR });
        } finally {
          await conn.query("select pg_advisory_unlock($1)", [MIGRATION_LOCK_ID]);
        }
      } finally {
        conn.release();
      }
    },
    async withSessionLock(lockId, fn) {
      const conn = await pool.connect();
      let broken = false;
      try {
        const r = await conn.query<{ ok: boolean }>("select pg_try_advisory_lock($1) as ok", [lockId]);
        if (r.rows[0]?.ok !== true) return false;
        try {
          await fn();
        } finally {
          await conn.query("select pg_advisory_unlock($1)", [lockId]).catch(() => {
            broken = true; // a lost connection released the lock with its session
          });
        }
        return true;
      } finally {
        conn.release(broken);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      router?.stop();
      await Promise.all([pool.end(), replicaPool?.end()]);
    },
  };
}

/** Runs `select 1` through Drizzle; used by tests to prove the query builder is wired. */
export async function selectOne(db: Db): Promise<number> {
  const rows = await db.execute<{ one: number }>(sql`select 1 as one`);
  const first = (rows as unknown as { rows: { one: number }[] }).rows[0];
  return first?.one ?? 0;
}
