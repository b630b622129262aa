import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";

/**
 * The cluster tier's fixture: a fresh PostgreSQL database (created from TEST_DATABASE_URL's server,
 * migrated once, dropped after), `count` API processes (`node src/server.ts`) on loopback sharing it
 * and one Redis (under a key prefix of their own), and HAProxy in front of them (roundrobin, health
 * checks on /health). Every process runs in its own process group and is killed in `stop()`.
 */

const root = path.resolve(import.meta.dirname, "../..");
export const HAPROXY = process.env.HAPROXY_BIN ?? "/usr/sbin/haproxy";

/** Why the tier cannot run here (undefined: it can). */
export function clusterUnavailable(): string | undefined {
  if (process.env.TEST_DATABASE_URL === undefined) return "TEST_DATABASE_URL is not set";
  if (process.env.TEST_REDIS_URL === undefined) return "TEST_REDIS_URL is not set";
  if (!existsSync(HAPROXY)) return `HAProxy is not installed (${HAPROXY})`;
  return undefined;
}

export interface Instance {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly dataDir: string;
  readonly logFile: string;
  proc: ChildProcess;
  /** Set once the process exited. */
  exited: boolean;
}

export interface Cluster {
  /** HAProxy's frontend. */
  readonly url: string;
  readonly databaseUrl: string;
  readonly db: pg.Pool;
  readonly instances: Instance[];
  readonly redisPrefix: string;
  readonly workDir: string;
  readonly haproxyLog: string;
  /** SIGTERM (graceful) or SIGKILL to one instance; resolves when it exited. */
  kill(instance: Instance, signal: "SIGTERM" | "SIGKILL"): Promise<void>;
  stop(): Promise<void>;
}

export const SECRET_KEY = "cluster-tier-secret-key-that-is-long-enough-0123456789";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number, why: () => string = () => "") {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} ${why()}`);
}

const healthy = async (url: string) => (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })).ok;

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(-proc.pid, signal); // the whole process group (detached: the child leads one)
  } catch {
    try {
      proc.kill(signal);
    } catch {
      // gone already
    }
  }
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once("exit", () => r()));
}

export async function startCluster(options: { count?: number; env?: Record<string, string> } = {}): Promise<Cluster> {
  const count = options.count ?? 3;
  const serverUrl = process.env.TEST_DATABASE_URL as string;
  const redisUrl = process.env.TEST_REDIS_URL as string;
  const workDir = mkdtempSync(path.join(tmpdir(), "vla-cluster-"));
  const dbName = `vla_cluster_${randomBytes(5).toString("hex")}`;
  const redisPrefix = `vla-cluster-${randomBytes(5).toString("hex")}:`;
  const procs: ChildProcess[] = [];
  const instances: Instance[] = [];
  let db: pg.Pool | undefined;
  let created = false;

  const stop = async () => {
    for (const p of procs) killGroup(p, "SIGTERM");
    const graceful = Promise.all(procs.map(exited));
    const timer = new Promise((r) => setTimeout(r, 5_000).unref());
    await Promise.race([graceful, timer]);
    for (const p of procs) killGroup(p, "SIGKILL");
    await Promise.race([Promise.all(procs.map(exited)), new Promise((r) => setTimeout(r, 2_000).unref())]);
    await db?.end().catch(() => {});
    if (created) {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`drop database if exists ${dbName} with (force)`).catch(() => {});
      await c.end();
    }
    await clearPrefix(redisUrl, redisPrefix).catch(() => {});
    if (process.env.CLUSTER_KEEP_LOGS === undefined) rmSync(workDir, { recursive: true, force: true });
  };

  try {
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`create database ${dbName}`);
    created = true;
    await admin.end();
    const u = new URL(serverUrl);
    u.pathname = `/${dbName}`;
    const databaseUrl = u.toString();

    const baseEnv: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: "test",
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisPrefix,
      SECRET_KEY,
      BOOTSTRAP_DEMO: "off",
      LOG_LEVEL: "info",
      LOG_PRETTY: "false",
      HOST: "127.0.0.1",
      DB_MIGRATE_ON_START: "false",
      DB_POOL_MAX: "8",
      LIMITS_INSTANCE_COUNT: String(count),
      // The shared 2-core test machine stalls the event loop now and then; no load shedding here.
      MAX_EVENT_LOOP_DELAY_MS: "0",
      // Revoked keys answer 401 while they are polled; that must not throttle the loopback address.
      API_KEY_INVALID_ATTEMPTS_PER_MINUTE: "1000000",
      // A generous Redis budget: on a loaded machine a slow reply must not fall back to local limits.
      LIMITS_REDIS_TIMEOUT_MS: "2000",
      REDIS_COMMAND_TIMEOUT_MS: "3000",
      MODELS_WARM_UP: "false",
      JPEG_DECODE_THREADS: "0",
      ...options.env,
    };
    for (const k of ["TEST_DATABASE_URL", "TEST_REDIS_URL", "VITEST", "VITEST_POOL_ID", "VITEST_WORKER_ID"]) {
      delete baseEnv[k];
    }

    // Migrations once, before any instance starts.
    const mig = spawnSync(process.execPath, [path.join(root, "src/cli.ts"), "migrate"], {
      cwd: workDir,
      env: { ...baseEnv, DATA_DIR: path.join(workDir, "migrate") },
      encoding: "utf8",
      timeout: 120_000,
    });
    if (mig.status !== 0) throw new Error(`migrate failed (${mig.status}): ${mig.stderr}${mig.stdout}`);

    const frontPort = await freePort();
    const url = `http://127.0.0.1:${frontPort}`;
    const spawnInstance = (i: number, port: number): Instance => {
      const name = `api${i + 1}`;
      const dataDir = path.join(workDir, name);
      const logFile = path.join(workDir, `${name}.log`);
      const out = openSync(logFile, "a");
      const proc = spawn(process.execPath, [path.join(root, "src/server.ts")], {
        cwd: root,
        // One public URL for all (the balancer's): it is also the JWT issuer every instance checks.
        env: { ...baseEnv, PORT: String(port), DATA_DIR: dataDir, PUBLIC_BASE_URL: url },
        stdio: ["ignore", out, out],
        detached: true,
      });
      procs.push(proc);
      const inst: Instance = { name, port, url: `http://127.0.0.1:${port}`, dataDir, logFile, proc, exited: false };
      proc.once("exit", () => {
        inst.exited = true;
      });
      return inst;
    };
    for (let i = 0; i < count; i++) instances.push(spawnInstance(i, await freePort()));
    await Promise.all(
      instances.map((inst) =>
        waitFor(
          `${inst.name} /health`,
          () => (inst.exited ? Promise.reject() : healthy(inst.url)),
          90_000,
          () => tail(inst.logFile),
        ),
      ),
    );

    const cfg = readFileSync(path.join(import.meta.dirname, "haproxy.cfg.tmpl"), "utf8")
      .replace("{{FRONT_PORT}}", String(frontPort))
      .replace("{{SERVERS}}", instances.map((s) => `  server ${s.name} 127.0.0.1:${s.port} check`).join("\n"));
    const cfgFile = path.join(workDir, "haproxy.cfg");
    writeFileSync(cfgFile, cfg);
    const haproxyLog = path.join(workDir, "haproxy.log");
    const hout = openSync(haproxyLog, "a");
    const haproxy = spawn(HAPROXY, ["-f", cfgFile, "-db"], { stdio: ["ignore", hout, hout], detached: true });
    procs.push(haproxy);
    await waitFor(
      "HAProxy",
      () => healthy(url),
      15_000,
      () => tail(haproxyLog),
    );

    db = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    const pool = db;
    return {
      url,
      databaseUrl,
      db: pool,
      instances,
      redisPrefix,
      workDir,
      haproxyLog,
      async kill(instance, signal) {
        killGroup(instance.proc, signal);
        await exited(instance.proc);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function tail(file: string): string {
  try {
    return `\n--- ${path.basename(file)} ---\n${readFileSync(file, "utf8").slice(-3_000)}`;
  } catch {
    return "";
  }
}

async function clearPrefix(redisUrl: string, prefix: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const r = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
}
