import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { type App, type BuildOptions, buildApp } from "../../src/app.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import { createDatabase, type Database, MIGRATIONS_DIR, wrapPglite } from "../../src/platform/db/client.ts";
import { createRedis, isCluster, type RedisHandle, scanTargets } from "../../src/platform/redis.ts";

/**
 * Test isolation: every call gets its own database and Redis key space.
 * - Embedded (default): an in-memory PGlite, migrated from migrations/.
 * - TEST_DATABASE_URL set: a fresh database `vla_t_<random>` created on that server and dropped after.
 * - TEST_REDIS_URL set: that Redis with a unique key prefix.
 */
export interface TestContext {
  readonly app: App;
  readonly config: Config;
  readonly database: Database;
  readonly redis: RedisHandle;
  readonly dataDir: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Extra environment variables for loadConfig. */
  readonly env?: Record<string, string>;
  readonly logStream?: Writable;
  /** Reuse a database (e.g. two app instances sharing one); it is not dropped by this context. */
  readonly database?: Database;
  /** Reuse a Redis key prefix (two instances sharing one Redis). */
  readonly redisKeyPrefix?: string;
  /** Extra plugins (probe routes) registered after the modules. */
  readonly plugins?: BuildOptions["plugins"];
  /** The app's clock (limits, key expiry, billing grace periods); defaults to Date.now. */
  readonly now?: () => number;
}

export const usingRealServices = process.env.TEST_DATABASE_URL !== undefined;

export function testConfig(env: Record<string, string> = {}, dataDir?: string): Config {
  return loadConfig(
    {
      NODE_ENV: "test",
      DATA_DIR: dataDir ?? mkdtempSync(path.join(tmpdir(), "vla-test-")),
      SECRET_KEY: "test-secret-key-that-is-long-enough-0123456789",
      MAX_EVENT_LOOP_DELAY_MS: "0",
      LOG_LEVEL: "silent",
      ...env,
    },
    { dotenv: false, persistGeneratedSecret: false },
  );
}

export interface IsolatedDatabase {
  readonly database: Database;
  drop(): Promise<void>;
}

/** The migrated template's data directory (a PGlite dump), and whether it was read from a file. */
let template: Promise<{ readonly dump: Blob; readonly fromFile: boolean }> | undefined;

/** What the migrated template depends on: every file under migrations/ and PGlite's version. */
function templateKey(): string {
  const hash = createHash("sha256");
  const pglite = path.resolve(import.meta.dirname, "../../node_modules/@electric-sql/pglite/package.json");
  hash.update((JSON.parse(readFileSync(pglite, "utf8")) as { version: string }).version);
  const files = readdirSync(MIGRATIONS_DIR, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
  for (const f of files) hash.update(`\0${path.relative(MIGRATIONS_DIR, f)}\0`).update(readFileSync(f));
  return hash.digest("hex").slice(0, 16);
}

const templateFile = () => path.join(tmpdir(), `vla-test-template-${templateKey()}.tar`);

/** Migrates a fresh PGlite (seconds: initdb) and keeps its dump in `file` for later test files. */
async function buildTemplate(file: string): Promise<{ dump: Blob; fromFile: boolean }> {
  const client = new PGlite();
  try {
    const db = await wrapPglite(client, "template");
    await db.migrate();
    const bytes = Buffer.from(await (await client.dumpDataDir("none")).arrayBuffer());
    // A temporary name, then rename: concurrent workers at worst both build it.
    const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}`;
    writeFileSync(temp, bytes);
    renameSync(temp, file);
    return { dump: new Blob([bytes]), fromFile: false };
  } finally {
    await client.close();
  }
}

/**
 * Every test file runs in a fresh process, and a fresh PGlite costs seconds (initdb); so the
 * first file to need a database dumps a migrated one to the temporary directory (keyed by the
 * migrations and PGlite's version) and every isolated database, in any file, loads that dump
 * (about half a second).
 */
async function migratedTemplate(): Promise<{ dump: Blob; fromFile: boolean }> {
  const file = templateFile();
  try {
    return { dump: new Blob([readFileSync(file)]), fromFile: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    return buildTemplate(file);
  }
}

/** Routing of the read handle to TEST_DATABASE_READ_URL's replica (test/replica). */
export interface ReadReplicaOptions {
  readonly maxLagMs: number;
  readonly checkMs: number;
}

/**
 * The URL of `name` on the streaming replica TEST_DATABASE_READ_URL, once the database created on
 * the primary has been replayed there (physical replication: every database of the cluster).
 */
export async function replicaUrlOf(name: string): Promise<string> {
  const readUrl = process.env.TEST_DATABASE_READ_URL;
  if (readUrl === undefined) throw new Error("TEST_DATABASE_READ_URL is not set");
  const url = new URL(readUrl);
  url.pathname = `/${name}`;
  const c = new pg.Client({ connectionString: readUrl });
  await c.connect();
  try {
    for (let i = 0; ; i++) {
      const r = await c.query("select 1 from pg_database where datname = $1", [name]);
      if (r.rowCount === 1) break;
      if (i >= 300) throw new Error(`database ${name} did not appear on the replica ${readUrl}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await c.end();
  }
  return url.toString();
}

/**
 * A migrated, empty database nobody else sees. With `read` (and TEST_DATABASE_URL and
 * TEST_DATABASE_READ_URL set) its read handle goes to that replica.
 */
export async function isolatedDatabase(read?: ReadReplicaOptions): Promise<IsolatedDatabase> {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (serverUrl === undefined) {
    template ??= migratedTemplate();
    let t = await template;
    let client: PGlite;
    try {
      client = await PGlite.create({ loadDataDir: t.dump });
    } catch (e) {
      if (!t.fromFile) throw e;
      // A dump this PGlite cannot load (written by another build of it): make a new one.
      template = buildTemplate(templateFile());
      t = await template;
      client = await PGlite.create({ loadDataDir: t.dump });
    }
    const database = await wrapPglite(client, "embedded PGlite (in memory, test clone)");
    return { database, drop: () => database.close() };
  }
  const name = `vla_t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let database = await createDatabase({ url: url.toString(), poolMax: 5 });
  await database.migrate();
  if (read !== undefined && process.env.TEST_DATABASE_READ_URL !== undefined) {
    await database.close();
    database = await createDatabase({
      url: url.toString(),
      poolMax: 5,
      readUrl: await replicaUrlOf(name),
      readMaxLagMs: read.maxLagMs,
      readCheckMs: read.checkMs,
    });
  }
  return {
    database,
    async drop() {
      await database.close();
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/**
 * TEST_REDIS_CLUSTER_NODES (host:port,...) runs against a Redis Cluster; vitest.config.ts then
 * also sets TEST_REDIS_URL to the same cluster as a `redis+cluster://` URL, so the tests that
 * configure an app through REDIS_URL use the cluster too.
 */
export function testRedis(prefix?: string): RedisHandle {
  const nodes = process.env.TEST_REDIS_CLUSTER_NODES;
  const url = process.env.TEST_REDIS_URL;
  return createRedis({
    ...(nodes === undefined || nodes === "" ? { url } : { clusterNodes: nodes.split(",") }),
    keyPrefix: prefix ?? `t:${randomBytes(6).toString("hex")}:`,
    // Generous: on a loaded 2-core machine a healthy Redis reply can take longer than the
    // production 500 ms, and a test expecting "redis" would then see the fallback. Tests of the
    // fallback build their own handle with a short timeout.
    commandTimeoutMs: 3_000,
  });
}

/** Every key matching `pattern` (KEYS on one Redis; on a cluster, on every master: KEYS sees one node). */
export async function redisKeys(redis: RedisHandle, pattern: string): Promise<string[]> {
  const client = redis.client;
  if (client === null) return [];
  const lists = await Promise.all(scanTargets(client).map((node) => node.keys(pattern)));
  return lists.flat();
}

/** Removes every key this test wrote, so runs against a shared Redis leave nothing behind. */
export async function clearRedisPrefix(redis: RedisHandle): Promise<void> {
  const client = redis.client;
  if (client === null || client.status !== "ready") return;
  // Per master on a cluster; one DEL per key there (a multi-key DEL must stay in one slot).
  for (const node of scanTargets(client)) {
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", `${redis.keyPrefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length === 0) continue;
      if (isCluster(client)) await Promise.all(keys.map((k) => node.del(k)));
      else await client.del(...keys);
    } while (cursor !== "0");
  }
}

export async function buildTestApp(options: TestAppOptions = {}): Promise<TestContext> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-test-"));
  const config = testConfig(options.env, dataDir);
  const isolated = options.database === undefined ? await isolatedDatabase() : undefined;
  const database = options.database ?? (isolated as IsolatedDatabase).database;
  const redis = testRedis(options.redisKeyPrefix);
  const app = await buildApp(config, {
    database,
    redis,
    migrate: false,
    ...(options.logStream === undefined ? {} : { logStream: options.logStream }),
    ...(options.plugins === undefined ? {} : { plugins: options.plugins }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  let closed = false;
  return {
    app,
    config,
    database,
    redis,
    dataDir,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await clearRedisPrefix(redis);
      await redis.close();
      await isolated?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
