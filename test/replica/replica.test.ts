import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeArchive } from "../../src/modules/account-export/archive.ts";
import type { ReadRouter } from "../../src/platform/db/replica.ts";
import { ndjson, untar } from "../account-export/helpers.ts";
import { type IsolatedDatabase, isolatedDatabase } from "../helpers/app.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";
import { flushLogs, jpeg } from "../inference/helpers.ts";

/**
 * The read handle against a real streaming replica (.ci/replica.sh; .ci/run sets the variables):
 * TEST_DATABASE_URL is the primary, TEST_DATABASE_READ_URL its replica. TEST_REPLICA_SCRIPT
 * (.ci/replica.sh) lets the last test stop and restart the replica's server.
 */
const readUrl = process.env.TEST_DATABASE_READ_URL;
const enabled = readUrl !== undefined && process.env.TEST_DATABASE_URL !== undefined;
if (!enabled) {
  console.log("test/replica skipped: set TEST_DATABASE_URL and TEST_DATABASE_READ_URL (.ci/run starts a replica)");
}
const script = process.env.TEST_REPLICA_SCRIPT;

let isolated: IsolatedDatabase;
let t: LimitsContext;
let key: string;
let customerId: string;
let img: string;
let router: ReadRouter;
let replicaAdmin: pg.Client;

/** Polls `cond` (running a replica check first) until it holds; fails after ~20 s. */
async function eventually(what: string, cond: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    await router.check();
    if (await cond()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting until ${what} (replica: ${JSON.stringify(router.state())})`);
}

const infer = async () => {
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "pick", robot_id: "arm-1", unnorm_key: "bridge_orig" },
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { inference_id: string }).inference_id;
};
const history = async () => {
  const res = await t.app.inject({
    method: "GET",
    url: "/v1/inference/history?limit=200",
    headers: { "x-api-key": key },
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { data: { id: string }[] }).data.map((r) => r.id);
};
const replicaControl = (command: "halt" | "resume") =>
  execFileSync(fileURLToPath(new URL(`../../${script}`, import.meta.url)), [command], {
    env: { ...process.env, REPLICA_PORT: new URL(readUrl as string).port || "5432" },
    stdio: "pipe",
  });

describe.skipIf(!enabled)("read replica (DATABASE_READ_URL)", () => {
  beforeAll(async () => {
    replicaAdmin = new pg.Client({ connectionString: readUrl });
    await replicaAdmin.connect(); // no replica: the file fails here, it does not skip
    isolated = await isolatedDatabase({ maxLagMs: 500, checkMs: 100 });
    const r = isolated.database.replica;
    if (r === undefined) throw new Error("the isolated database has no replica router");
    router = r;
    t = await buildLimitsApp({ database: isolated.database, env: { MODELS_WARM_UP: "false" } });
    customerId = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
    key = (await seedKey(t.database, customerId)).key;
    img = (await jpeg(64, 64, 3)).toString("base64");
  });
  afterAll(async () => {
    if (replicaAdmin !== undefined) {
      await replicaAdmin.query("select pg_wal_replay_resume()").catch(() => {});
      await replicaAdmin.end().catch(() => {});
    }
    await t?.close();
    await isolated?.drop();
  });

  it("sends heavy reads to the replica, which returns the rows written on the primary once replayed", async () => {
    const inRecovery = async (db: typeof t.database.db) =>
      ((await db.execute(sql`select pg_is_in_recovery() as r`)) as unknown as { rows: { r: boolean }[] }).rows[0]?.r;
    await eventually("the replica is usable", () => router.state().usable);
    expect(await inRecovery(t.database.read)).toBe(true);
    expect(await inRecovery(t.database.db)).toBe(false);

    const ids = [await infer(), await infer(), await infer()];
    await flushLogs(t.app);
    const before = router.state().reads.replica;
    await eventually("the history lists the new rows", async () => (await history()).length === 3);
    expect((await history()).sort()).toEqual([...ids].sort());
    expect(router.state().reads.replica).toBeGreaterThan(before);
    const metrics = await t.app.platform.metrics.registry.metrics();
    expect(metrics).toMatch(/^vla_db_replica_usable 1$/m);
    expect(metrics).toMatch(/^vla_db_reads_total\{target="replica"\} [1-9]/m);
  });

  it("reads an inference right after it was made from the primary (read-your-writes)", async () => {
    // Replay paused: the replica never sees this row, yet GET /v1/inference/{id} finds it.
    await replicaAdmin.query("select pg_wal_replay_pause()");
    try {
      const id = await infer();
      await flushLogs(t.app);
      const res = await t.app.inject({ method: "GET", url: `/v1/inference/${id}`, headers: { "x-api-key": key } });
      expect(res.statusCode, res.body).toBe(200);
      expect((res.json() as { id: string }).id).toBe(id);
    } finally {
      await replicaAdmin.query("select pg_wal_replay_resume()");
    }
  });

  it("exports read the replica once it has replayed the rows the sections just flushed, else the primary", async () => {
    await eventually("the replica is usable", () => router.state().usable);
    const inRecovery = async (db: typeof t.database.db) =>
      ((await db.execute(sql`select pg_is_in_recovery() as r`)) as unknown as { rows: { r: boolean }[] }).rows[0]?.r;
    expect(await inRecovery(await t.database.readAfterWrites())).toBe(true);
    await replicaAdmin.query("select pg_wal_replay_pause()");
    try {
      await seedCustomer(t.database, {}); // a write the paused replica does not replay
      expect(await inRecovery(await t.database.readAfterWrites(300))).toBe(false);
    } finally {
      await replicaAdmin.query("select pg_wal_replay_resume()");
    }

    // Rows still buffered in the inference log writer when the export starts are in the archive.
    await eventually("the replica is usable again", () => router.state().usable);
    const before = (await history()).length;
    const ids = [await infer(), await infer()];
    const dir = mkdtempSync(path.join(tmpdir(), "vla-replica-export-"));
    try {
      const replicaReads = router.state().reads.replica;
      await writeArchive({
        customerId,
        sections: t.app.platform.exports.sections,
        db: () => t.database.readAfterWrites(),
        outFile: path.join(dir, "export.tar.gz"),
        stagePrefix: path.join(dir, "stage-"),
        now: Date.now,
      });
      const files = untar(readFileSync(path.join(dir, "export.tar.gz")));
      const logs = ndjson(files.get("inference_logs.ndjson")).map((r) => r.id);
      expect(logs).toHaveLength(before + 2);
      expect(logs).toEqual(expect.arrayContaining(ids));
      expect(router.state().reads.replica).toBeGreaterThan(replicaReads);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("falls back to the primary while the replica lags beyond the bound, then returns to it", async () => {
    await eventually("the replica is usable", () => router.state().usable);
    await replicaAdmin.query("select pg_wal_replay_pause()");
    let id: string;
    try {
      await eventually("the replica lags beyond 500 ms", async () => {
        await infer(); // keeps the primary writing, so the lag grows
        await flushLogs(t.app);
        return !router.state().usable;
      });
      expect(router.state().reason).toMatch(/above the bound of 500 ms/);
      id = await infer();
      await flushLogs(t.app);
      const before = router.state().reads;
      const listed = await history(); // from the primary: the row just written is there
      expect(listed).toContain(id);
      expect(router.state().reads.primary).toBeGreaterThan(before.primary);
      expect(router.state().reads.replica).toBe(before.replica);
      expect(await t.app.platform.metrics.registry.metrics()).toMatch(/^vla_db_replica_usable 0$/m);
    } finally {
      await replicaAdmin.query("select pg_wal_replay_resume()");
    }
    await eventually("the replica is usable again", () => router.state().usable);
    const before = router.state().reads.replica;
    expect(await history()).toContain(id);
    expect(router.state().reads.replica).toBeGreaterThan(before);
  });

  it.skipIf(script === undefined)("keeps serving reads from the primary while the replica is down", async () => {
    await eventually("the replica is usable", () => router.state().usable);
    await replicaAdmin.end();
    replicaControl("halt");
    try {
      const before = router.state().reads;
      expect((await history()).length).toBeGreaterThan(0); // 200, no 500
      const after = router.state().reads;
      expect(after.fallback + after.primary).toBeGreaterThan(before.fallback + before.primary);
      await router.check();
      expect(router.state().usable).toBe(false);
      expect((await history()).length).toBeGreaterThan(0);
    } finally {
      replicaControl("resume");
      replicaAdmin = new pg.Client({ connectionString: readUrl });
      await replicaAdmin.connect();
    }
    await eventually("the replica is usable again", () => router.state().usable);
    const before = router.state().reads.replica;
    await history();
    expect(router.state().reads.replica).toBeGreaterThan(before);
  });
});
