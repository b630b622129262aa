/**
 * Account export: time and peak memory of an export of a customer with many inference logs.
 *
 *   npx node bench/export.bench.ts
 *     BENCH_DATABASE_URL   a PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
 *                          the bench creates a fresh database on it and drops it at the end
 *     BENCH_ROWS           inference rows of the exported customer (default 1,000,000, over 90 days)
 *     EXPORT_BATCH_ROWS    keyset page size (default 5,000, as the server's default)
 *
 * Rows are generated with generate_series into the partitioned inference_logs (instruction text,
 * a 7-float action, hashes, latencies), then the app's own export job runs (the service behind
 * POST /v1/account/export: keyset pages, NDJSON staged to disk, tar + gzip) while RSS is sampled
 * every 50 ms. Printed: rows, wall time, rows/s, archive size, RSS before, peak sampled RSS during
 * the job (and its growth over the baseline), and VmHWM of the process.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "drizzle-orm";
import pg from "pg";
import { buildApp } from "../src/app.ts";
import { exportServices } from "../src/modules/account-export/export.module.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { customers } from "../src/platform/db/schema/index.ts";
import { benchConfig } from "./lib/server.ts";

const SERVER_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const BATCH = process.env.EXPORT_BATCH_ROWS ?? "5000";
const MB = 1024 * 1024;

function vmHwmKb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m === null ? Number.NaN : Number(m[1]);
}

async function main(): Promise<void> {
  const name = `vla_bench_export_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-export-"));
  const config = benchConfig(dataDir, {
    DATABASE_URL: url.toString(),
    MODELS_WARM_UP: "false",
    EXPORT_BATCH_ROWS: BATCH,
    DB_STATEMENT_TIMEOUT_MS: "0",
  });
  const database = await createDatabase({ url: url.toString(), poolMax: 4, statementTimeoutMs: 0 });
  try {
    await database.migrate();
    const app = await buildApp(config, { database, migrate: false });
    const [c] = await database.db.insert(customers).values({ name: "bench", email: "bench@example.com" }).returning();
    const customerId = (c as { id: string }).id;
    const end = Date.now();
    const t0 = Date.now();
    for (let done = 0; done < ROWS; done += 250_000) {
      const k = Math.min(250_000, ROWS - done);
      await database.db.execute(sql`insert into inference_logs (id, created_at, customer_id, model, backend, robot_id,
          instruction, instruction_sha256, instruction_key, image_sha256, action, unnorm_key, status,
          preprocess_ms, queue_ms, model_ms, total_ms, source, safety_status)
        select gen_random_uuid(), ${new Date(end).toISOString()}::timestamptz - random() * interval '90 days',
          ${customerId}::uuid, 'mock-openvla-7b', 'mock', 'arm-' || (g % 20), 'pick up the red block ' || (g % 200),
          md5('i' || g), md5('k' || (g % 200)), md5('img' || g),
          jsonb_build_array(random(), random(), random(), random(), random(), random(), 1),
          'bridge_orig', 'ok', 1.5, random() * 5, 30 + random() * 20, 40 + random() * 30, 'rest', 'pass'
        from generate_series(1, ${k}) g`);
      process.stderr.write(`  generated ${done + k}/${ROWS}\r`);
    }
    await database.db.execute(sql`analyze inference_logs`);
    process.stderr.write(`\n  seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    const service = exportServices.get(app.platform);
    if (service === undefined) throw new Error("export module missing");
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const started = process.hrtime.bigint();
    const out = await service.request({ customerId, userId: null, apiKeyId: null });
    if (!out.ok) throw new Error("export refused");
    await service.idle();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    clearInterval(sampler);
    const job = await service.get(customerId, out.job.id);
    if (job?.status !== "done") throw new Error(`export ${job?.status}: ${job?.error}`);
    const rows = job.progress.inference_logs ?? 0;
    const result = {
      rows,
      batch_rows: Number(BATCH),
      seconds: Number(seconds.toFixed(1)),
      rows_per_second: Math.round(rows / seconds),
      archive_mb: Number(((job.sizeBytes ?? 0) / MB).toFixed(1)),
      rss_before_mb: Math.round(before / MB),
      rss_peak_mb: Math.round(peak / MB),
      rss_growth_mb: Math.round((peak - before) / MB),
      vm_hwm_mb: Math.round(vmHwmKb() / 1024),
      max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    await app.close();
  } finally {
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
    const c = new pg.Client({ connectionString: SERVER_URL });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  }
}

await main();
