/**
 * Analytics: the rollups against raw logs, and what maintaining them costs.
 *
 *   npx node bench/analytics.bench.ts
 *     BENCH_DATABASE_URL   a PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
 *                          the bench creates fresh databases on it and drops them at the end
 *     BENCH_ROWS           inference rows of the measured customer (default 2,000,000, over 90 days)
 *     BENCH_OTHER_ROWS     rows of each of the 49 other customers (default 10,000)
 *     BENCH_SECONDS        per throughput measurement (default 8)
 *     BENCH_PART           query | throughput | all (default all)
 *
 * 1. query: rows generated with generate_series (lognormal latencies, 3 models, 20 robots, 200
 *    instructions, 2 % errors), counted into the rollups by the job (its catch-up rate is
 *    reported), then, in the same run, GET /v1/analytics/usage (30 days, daily, by model) over
 *    HTTP against the same answer computed from the raw rows (counts per day and model, and
 *    percentile_cont p50/p95/p99): p50/p95 of each, the ratio, and the largest relative
 *    difference between the two answers' percentiles.
 * 2. throughput: POST /v1/inference (mock, 0 ms, 16 connections, autocannon) on two servers, one
 *    with the rollup job on (every second: harsher than the 5 s default) and one off, each on its
 *    own fresh database, measured off, on, on, off so load drifts hit both alike.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import autocannon from "autocannon";
import { sql } from "drizzle-orm";
import pg from "pg";
import sharp from "sharp";
import { buildApp } from "../src/app.ts";
import { RollupJob } from "../src/modules/analytics/rollup-job.ts";
import { RollupsRepo } from "../src/modules/analytics/rollups.repo.ts";
import { InferenceLogsRepo } from "../src/modules/inference/inference-logs.repo.ts";
import { createDatabase, type Database } from "../src/platform/db/client.ts";
import { Pseudonymizer } from "../src/platform/pseudonym.ts";
import { benchConfig, seedUnlimitedKey, serveForBench, writeMockRegistry } from "./lib/server.ts";

const SERVER_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ROWS = Number(process.env.BENCH_ROWS ?? 2_000_000);
const OTHER_ROWS = Number(process.env.BENCH_OTHER_ROWS ?? 10_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const PART = process.env.BENCH_PART ?? "all";
const DAY = 86_400_000;

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

async function freshDatabase(tag: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `vla_bench_${tag}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: SERVER_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

function pct(values: number[], p: number): number {
  const x = values.slice().sort((a, b) => a - b);
  return x[Math.min(x.length - 1, Math.floor((p / 100) * x.length))] as number;
}

/** `n` rows of `customerId` over the 90 days before `end`, in chunks of 250k (one statement each). */
async function generate(database: Database, customerId: string, keyId: string | null, n: number, end: number) {
  for (let done = 0; done < n; done += 250_000) {
    const k = Math.min(250_000, n - done);
    await database.db.execute(sql`insert into inference_logs (id, created_at, customer_id, api_key_id, model, robot_id,
        instruction_key, status, error_code, queue_ms, model_ms, total_ms, source, safety_status)
      select gen_random_uuid(), ${new Date(end).toISOString()}::timestamptz - random() * interval '90 days',
        ${customerId}::uuid, ${keyId}::uuid, (array['mock-openvla-7b', 'mock-pi0', 'demo-vla-tiny'])[1 + g % 3],
        'arm-' || (g % 20), md5('instruction ' || (g % 200)), case when e then 'error' else 'ok' end,
        case when e then 'model_overloaded' end, lat * 0.1, lat * 0.8, case when e then 0.5 else lat end,
        case when g % 4 = 0 then 'act' else 'rest' end,
        case when e then null when g % 50 = 0 then 'clamped' else 'pass' end
      from (select g, random() < 0.02 as e,
              exp(ln(40) + 0.5 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) as lat
            from generate_series(1, ${k}) g) s`);
    process.stderr.write(`  generated ${Math.min(n, done + k)}/${n}\r`);
  }
  process.stderr.write("\n");
}

async function get(port: number, url: string, headers: Record<string, string>, agent: http.Agent) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: url, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function queryBench(): Promise<void> {
  const fresh = await freshDatabase("query");
  const database = await createDatabase({ url: fresh.url, poolMax: 5 });
  try {
    await database.migrate();
    const end = Date.UTC(2026, 11, 1);
    await new InferenceLogsRepo(database.db).ensurePartitions(new Date(end - 95 * DAY), 4);
    const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-analytics-"));
    const config = benchConfig(dataDir, { ANALYTICS_ROLLUPS: "false", MODELS_WARM_UP: "false" });
    const app = await buildApp(config, { database, migrate: false });
    const { customerId, key } = await seedUnlimitedKey(database);
    const others: string[] = [];
    for (let i = 0; i < 49; i++) others.push((await seedUnlimitedKey(database)).customerId);
    const keyId = rowsOf<{ id: string }>(
      await database.db.execute(sql`select id::text as id from api_keys where customer_id = ${customerId}::uuid`),
    )[0]?.id as string;

    let t0 = performance.now();
    console.error(`generating ${ROWS} rows for the measured customer and ${OTHER_ROWS} for each of 49 others`);
    await generate(database, customerId, keyId, ROWS, end);
    for (const c of others) await generate(database, c, null, OTHER_ROWS, end);
    await database.db.execute(sql`analyze inference_logs`);
    const genS = (performance.now() - t0) / 1000;
    const total = ROWS + 49 * OTHER_ROWS;

    t0 = performance.now();
    const job = new RollupJob({
      db: database.db,
      repo: new RollupsRepo(new Pseudonymizer("bench-analytics-pseudonym-key-000000000")),
      batchSize: 50_000,
    });
    let counted = 0;
    for (;;) {
      const r = await job.step();
      counted += r.logs;
      process.stderr.write(`  rollups: ${counted}/${total} rows\r`);
      if (r.logs < 50_000) break;
    }
    process.stderr.write("\n");
    const rollS = (performance.now() - t0) / 1000;
    const rollupRows = rowsOf<{ n: number }>(
      await database.db.execute(sql`select (select count(*) from robot_performance_metrics)::int as n`),
    )[0]?.n;

    const address = await app.listen({ host: "127.0.0.1", port: 0 });
    const port = Number(new URL(address).port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const from = new Date(end - 30 * DAY).toISOString();
    const to = new Date(end).toISOString();
    const url = `/v1/analytics/usage?from=${from}&to=${to}&granularity=day&group_by=model`;
    const headers = { "x-api-key": key };
    const rawSql = sql`select to_char(date_trunc('day', created_at at time zone 'UTC'), 'YYYY-MM-DD') as day, model,
        count(*)::int as requests, (count(*) filter (where status = 'error'))::int as errors,
        percentile_cont(array[0.5, 0.95, 0.99]) within group (order by total_ms) filter (where status = 'ok') as p
      from inference_logs where customer_id = ${customerId}::uuid
        and created_at >= ${from}::timestamptz and created_at < ${to}::timestamptz
      group by grouping sets ((1, 2), (2), ())`;

    // Warm-up, then alternate: 10 rounds of (20 rollup requests, 2 raw queries).
    await get(port, url, headers, agent);
    await database.db.execute(rawSql);
    const apiMs: number[] = [];
    const rawMs: number[] = [];
    let api:
      | {
          series: {
            group: string;
            points: { start: string; requests: number; p50_ms: number; p95_ms: number; p99_ms: number }[];
          }[];
        }
      | undefined;
    let raw: { day: string | null; model: string | null; requests: number; p: number[] }[] = [];
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 20; i++) {
        const s = performance.now();
        const res = await get(port, url, headers, agent);
        apiMs.push(performance.now() - s);
        if (res.status !== 200) throw new Error(`usage answered ${res.status}: ${res.body}`);
        api = JSON.parse(res.body);
      }
      for (let i = 0; i < 2; i++) {
        const s = performance.now();
        raw = rowsOf(await database.db.execute(rawSql));
        rawMs.push(performance.now() - s);
      }
    }
    agent.destroy();
    // The two answers agree: counts exactly, percentiles within the sketch's 1 %.
    let maxRel = 0;
    let countMismatches = 0;
    for (const r of raw) {
      if (r.day === null || r.model === null) continue;
      const p = api?.series.find((s) => s.group === r.model)?.points.find((x) => x.start.startsWith(r.day as string));
      if (p === undefined || p.requests !== r.requests) countMismatches++;
      if (p === undefined) continue;
      const ps = (
        typeof r.p === "string" ? JSON.parse((r.p as string).replace("{", "[").replace("}", "]")) : r.p
      ) as number[];
      [p.p50_ms, p.p95_ms, p.p99_ms].forEach((v, i) => {
        maxRel = Math.max(maxRel, Math.abs(v - (ps[i] as number)) / (ps[i] as number));
      });
    }
    const result = {
      rows_total: total,
      rows_customer: ROWS,
      generate_s: Number(genS.toFixed(1)),
      rollup_catch_up_s: Number(rollS.toFixed(1)),
      rollup_rows_per_s: Math.round(total / rollS),
      daily_rollup_rows: rollupRows,
      usage_p50_ms: Number(pct(apiMs, 50).toFixed(2)),
      usage_p95_ms: Number(pct(apiMs, 95).toFixed(2)),
      raw_p50_ms: Number(pct(rawMs, 50).toFixed(1)),
      raw_p95_ms: Number(pct(rawMs, 95).toFixed(1)),
      speedup_p95: Number((pct(rawMs, 95) / pct(apiMs, 95)).toFixed(1)),
      speedup_p50: Number((pct(rawMs, 50) / pct(apiMs, 50)).toFixed(1)),
      count_mismatches: countMismatches,
      max_percentile_rel_diff: Number(maxRel.toFixed(5)),
    };
    console.log(JSON.stringify({ bench: "analytics-query", ...result }));
    await app.close();
  } finally {
    await database.close();
    await fresh.drop();
  }
}

// ---------------------------------------------------------------- throughput (server children)

async function serve(url: string, rollups: string): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-analytics-srv-"));
  const registryFile = writeMockRegistry(dataDir, { batching: { max_batch_size: 16, max_wait_ms: 0 } });
  const config = benchConfig(dataDir, {
    MODELS_CONFIG: registryFile,
    ANALYTICS_ROLLUPS: rollups,
    ANALYTICS_ROLLUP_INTERVAL_MS: "1000",
  });
  const database = await createDatabase({ url, poolMax: 5 });
  const app = await buildApp(config, { database, migrate: true });
  const { key } = await seedUnlimitedKey(database);
  await serveForBench(app, database, key);
}

async function startChild(url: string, rollups: "true" | "false") {
  const child: ChildProcess = spawn(process.execPath, [new URL(import.meta.url).pathname, "--serve", url, rollups], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const ready = await new Promise<{ port: number; key: string }>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (l) => {
      if (l.startsWith("READY ")) resolve(JSON.parse(l.slice(6)));
    });
    child.on("exit", (code) => reject(new Error(`server exited ${code}`)));
  });
  return { child, ...ready };
}

async function saturate(port: number, key: string, body: string) {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/v1/inference`,
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body,
    connections: 16,
    duration: SECONDS,
  });
  return { rps: r.requests.average, non2xx: r.non2xx };
}

async function throughputBench(): Promise<void> {
  const dbOn = await freshDatabase("on");
  const dbOff = await freshDatabase("off");
  const on = await startChild(dbOn.url, "true");
  const off = await startChild(dbOff.url, "false");
  try {
    const raw = Buffer.alloc(224 * 224 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 9)) & 255;
    const jpeg = await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const body = JSON.stringify({
      image: jpeg.toString("base64"),
      instruction: "pick up the red block",
      robot_id: "bench-arm",
      unnorm_key: "bridge_orig",
    });
    await saturate(off.port, off.key, body);
    await saturate(on.port, on.key, body);
    const o1 = await saturate(off.port, off.key, body);
    const n1 = await saturate(on.port, on.key, body);
    const n2 = await saturate(on.port, on.key, body);
    const o2 = await saturate(off.port, off.key, body);
    // Let the job finish the last rows, then check it counted them all.
    await new Promise((r) => setTimeout(r, 4000));
    const c = new pg.Client({ connectionString: dbOn.url });
    await c.connect();
    const counts = (
      await c.query(`select (select count(*) from inference_logs)::int as logs,
        (select coalesce(sum(requests), 0) from robot_performance_metrics)::int as counted`)
    ).rows[0];
    await c.end();
    const offRps = (o1.rps + o2.rps) / 2;
    const onRps = (n1.rps + n2.rps) / 2;
    console.log(
      JSON.stringify({
        bench: "analytics-throughput",
        seconds: SECONDS,
        off_rps: [o1.rps, o2.rps],
        on_rps: [n1.rps, n2.rps],
        ratio: Number((onRps / offRps).toFixed(3)),
        non2xx: o1.non2xx + o2.non2xx + n1.non2xx + n2.non2xx,
        on_logs: counts.logs,
        on_counted: counts.counted,
      }),
    );
  } finally {
    for (const c of [on.child, off.child]) {
      c.kill("SIGTERM");
      await new Promise((r) => c.once("exit", r));
    }
    await dbOn.drop();
    await dbOff.drop();
  }
}

if (process.argv[2] === "--serve") {
  await serve(process.argv[3] as string, process.argv[4] as string);
} else {
  if (PART === "query" || PART === "all") await queryBench();
  if (PART === "throughput" || PART === "all") await throughputBench();
}
