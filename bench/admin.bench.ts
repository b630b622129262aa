/**
 * The admin customer list at scale: `GET /admin/customers` for every sort, first page and a deep
 * page, over HTTP against a server on PostgreSQL.
 *
 *   npm run bench:admin
 *     BENCH_DATABASE_URL   a PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
 *                          the bench creates a fresh database on it and drops it at the end
 *     BENCH_CUSTOMERS      customers (default 10,000), each with 1 to 3 members and 0 to 3 keys
 *     BENCH_ROWS           inference_logs rows over the last 60 days (default 5,000,000)
 *     BENCH_REQUESTS       measured requests per case (default 200, after 10 warm-up requests)
 *     BENCH_DEEP_PAGES     pages walked (limit 25) to get the deep page's cursor (default 50)
 *
 * Seeding uses generate_series INSERT ... SELECT: customers (tiers, subscriptions with monthly
 * and yearly prices, some suspended, created_at with deliberate ties), users, keys, log rows
 * spread over customers with a skew (a few heavy users), then the hourly rollup and the month's
 * usage_counters aggregated from those rows in one statement each (what the analytics job and
 * the limiter would have written), then the admin metrics refresh (timed). Prints the seed
 * rates, p50/p95/p99 per case and the EXPLAIN (ANALYZE, BUFFERS) of each case's page query.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq, sql } from "drizzle-orm";
import pg from "pg";
import { buildApp } from "../src/app.ts";
import { AdminCustomersRepo, type CustomerSort } from "../src/modules/admin/customers.repo.ts";
import { InferenceLogsRepo } from "../src/modules/inference/inference-logs.repo.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { users } from "../src/platform/db/schema/index.ts";
import { benchConfig } from "./lib/server.ts";

const SERVER_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const CUSTOMERS = Number(process.env.BENCH_CUSTOMERS ?? 10_000);
const ROWS = Number(process.env.BENCH_ROWS ?? 5_000_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200);
const DEEP_PAGES = Number(process.env.BENCH_DEEP_PAGES ?? 50);
const PAGE = 25;
const DAY = 86_400_000;

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

function pct(values: number[], p: number): number {
  const x = values.slice().sort((a, b) => a - b);
  return x[Math.min(x.length - 1, Math.floor((p / 100) * x.length))] as number;
}

async function request(
  port: number,
  method: string,
  url: string,
  headers: Record<string, string>,
  agent: http.Agent,
  body?: string,
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: url, method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  console.error(`  ${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

async function main(): Promise<void> {
  const name = `vla_bench_admin_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const database = await createDatabase({ url: url.toString(), poolMax: 5, statementTimeoutMs: 0 });
  const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-admin-"));
  const config = benchConfig(dataDir, { ANALYTICS_ROLLUPS: "false", MODELS_WARM_UP: "false" });
  const db = database.db;
  const now = Date.now();
  try {
    await database.migrate();
    await new InferenceLogsRepo(db).ensurePartitions(new Date(now - 62 * DAY), 3);
    console.error(`seeding ${CUSTOMERS} customers and ${ROWS} log rows`);
    const seed0 = performance.now();
    await timed("customers", () =>
      db.execute(sql`insert into customers (name, email, company, tier, created_at, suspended_at, suspended_reason,
          subscription_status, stripe_price_id, subscription_unit_amount, subscription_currency, subscription_interval)
        select 'Customer ' || g, 'c' || g || '@bench.example', case when g % 3 = 0 then 'Company ' || (g % 997) end,
          (array['free', 'free', 'pro', 'enterprise'])[1 + g % 4]::customer_tier,
          -- every 10 customers share one instant: keyset pages must break the ties by id
          ${new Date(now).toISOString()}::timestamptz - ((g / 10) * interval '1 hour'),
          case when g % 97 = 0 then now() end, case when g % 97 = 0 then 'bench' end,
          case when g % 4 in (2, 3) then (array['active', 'active', 'past_due', 'canceled'])[1 + g % 7 % 4] end,
          case when g % 4 in (2, 3) then 'price_bench' end,
          case when g % 4 = 2 then 4900 when g % 4 = 3 then 49000 + (g % 13) * 1000 end,
          case when g % 4 in (2, 3) then 'usd' end,
          case when g % 4 = 2 then 'month' when g % 4 = 3 then (array['month', 'year'])[1 + g % 2] end
        from generate_series(1, ${CUSTOMERS}) g`),
    );
    // What the billing webhook writes beside those fields (monthlyAmount, quantity 1).
    await db.execute(sql`update customers set mrr_minor = case when subscription_status in ('active', 'past_due')
        and subscription_unit_amount is not null then round(subscription_unit_amount
        * case subscription_interval when 'month' then 1.0 when 'year' then 1.0 / 12 else 0 end)::bigint else 0 end`);
    const ids = rowsOf<{ id: string }>(await db.execute(sql`select id::text as id from customers order by id`)).map(
      (r) => r.id,
    );
    await timed("users (1 to 3 per customer)", () =>
      db.execute(sql`insert into users (customer_id, role, email, password_hash, last_login_at)
        select c.id, case when n = 1 then 'owner' else 'member' end::user_role,
          'u' || n || '-' || c.email, 'bench-not-a-hash', now() - random() * interval '60 days'
        from customers c, generate_series(1, 3) n where n <= 1 + abs(hashtext(c.id::text)) % 3`),
    );
    await timed("api keys (0 to 3 per customer)", () =>
      db.execute(sql`insert into api_keys (customer_id, name, key_hash, display_prefix, last_used_at, revoked_at)
        select c.id, 'key ' || n, md5(random()::text || c.id || n), 'vla_live_bnch',
          now() - random() * interval '30 days', case when n = 3 then now() - interval '1 day' end
        from customers c, generate_series(1, 3) n where n <= abs(hashtext(c.id::text || 'k')) % 4`),
    );
    // Skewed: customer index floor(N * u^3) gets far more rows for small indexes.
    const chunk = 250_000;
    const logs0 = performance.now();
    for (let done = 0; done < ROWS; done += chunk) {
      const k = Math.min(chunk, ROWS - done);
      await db.execute(sql`insert into inference_logs (id, created_at, customer_id, model, robot_id, status,
          error_code, queue_ms, model_ms, total_ms, source, safety_status)
        select gen_random_uuid(), ${new Date(now).toISOString()}::timestamptz - random() * interval '60 days',
          (${sql.raw(`'{${ids.join(",")}}'::uuid[]`)})[1 + floor(${CUSTOMERS} * power(random(), 3))::int],
          (array['mock-openvla-7b', 'mock-pi0'])[1 + g % 2], 'arm-' || (g % 20),
          case when g % 50 = 0 then 'error' else 'ok' end, case when g % 50 = 0 then 'model_overloaded' end,
          4, 30, 40, case when g % 4 = 0 then 'act' else 'rest' end, 'pass'
        from generate_series(1, ${k}) g`);
      process.stderr.write(`  logs ${done + k}/${ROWS}\r`);
    }
    const logsS = (performance.now() - logs0) / 1000;
    console.error(`\n  logs: ${logsS.toFixed(1)} s (${Math.round(ROWS / logsS)} rows/s)`);
    await timed("usage_hourly_metrics from the logs", () =>
      db.execute(sql`insert into usage_hourly_metrics (customer_id, hour, model, source, api_key_id, requests, errors,
          first_seen, last_seen)
        select customer_id, date_trunc('hour', created_at), model, source,
          coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'), count(*),
          count(*) filter (where status = 'error'), min(created_at), max(created_at)
        from inference_logs group by 1, 2, 3, 4, 5`),
    );
    const month = `${new Date(now).toISOString().slice(0, 7)}-01`;
    await timed("usage_counters of this month", () =>
      db.execute(sql`insert into usage_counters (customer_id, month, requests)
        select customer_id, ${month}::date, count(*) from inference_logs
        where created_at >= ${month}::timestamptz group by 1`),
    );
    await timed("analyze", () => db.execute(sql`analyze`));
    const seedS = (performance.now() - seed0) / 1000;
    const repo = new AdminCustomersRepo(db);
    const refreshMs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await repo.refreshMetrics(new Date());
      refreshMs.push(performance.now() - t0);
    }
    await db.execute(sql`analyze customer_admin_metrics`);
    const hourly = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from usage_hourly_metrics`))[0]
      ?.n;

    const app = await buildApp(config, { database, migrate: false, backgroundJobs: false });
    const address = await app.listen({ host: "127.0.0.1", port: 0 });
    const port = Number(new URL(address).port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const email = `root-${randomBytes(3).toString("hex")}@bench.example`;
    const password = "bench password that is long enough";
    const json = { "content-type": "application/json" };
    const reg = await request(port, "POST", "/auth/register", json, agent, JSON.stringify({ email, password }));
    if (reg.status !== 201) throw new Error(`register: ${reg.status} ${reg.body}`);
    await db.update(users).set({ isSuperuser: true }).where(eq(users.email, email));
    const tok = await request(
      port,
      "POST",
      "/auth/token",
      { "content-type": "application/x-www-form-urlencoded" },
      agent,
      new URLSearchParams({ grant_type: "password", username: email, password }).toString(),
    );
    if (tok.status !== 200) throw new Error(`token: ${tok.status} ${tok.body}`);
    const headers = { authorization: `Bearer ${(JSON.parse(tok.body) as { access_token: string }).access_token}` };

    const explain = new pg.Client({ connectionString: url.toString() });
    await explain.connect();
    const results: { case: string; p50: number; p95: number; p99: number }[] = [];
    const plans: string[] = [];
    for (const sort of ["created_at", "requests_30d", "mrr"] as CustomerSort[]) {
      let cursor: string | undefined;
      const base = `/admin/customers?sort=${sort}&limit=${PAGE}`;
      for (let i = 0; i < DEEP_PAGES; i++) {
        const res = await request(
          port,
          "GET",
          `${base}${cursor === undefined ? "" : `&cursor=${cursor}`}`,
          headers,
          agent,
        );
        if (res.status !== 200) throw new Error(`list: ${res.status} ${res.body}`);
        cursor = (JSON.parse(res.body) as { next_cursor: string }).next_cursor;
      }
      for (const [label, u, c] of [
        ["first page", base, undefined],
        [`page ${DEEP_PAGES + 1}`, `${base}&cursor=${cursor}`, cursor],
      ] as const) {
        for (let i = 0; i < 10; i++) await request(port, "GET", u, headers, agent);
        const ms: number[] = [];
        for (let i = 0; i < REQUESTS; i++) {
          const t0 = performance.now();
          const res = await request(port, "GET", u, headers, agent);
          ms.push(performance.now() - t0);
          if (res.status !== 200) throw new Error(`list: ${res.status} ${res.body}`);
        }
        results.push({ case: `sort=${sort} ${label}`, p50: pct(ms, 50), p95: pct(ms, 95), p99: pct(ms, 99) });
        const q = repo.pageQuery({}, { sort, order: "desc", limit: PAGE, cursor: c }).toSQL();
        const plan = (await explain.query<{ "QUERY PLAN": string }>(`explain (analyze, buffers) ${q.sql}`, q.params))
          .rows;
        plans.push(`-- sort=${sort} ${label}\n${plan.map((r) => r["QUERY PLAN"]).join("\n")}`);
      }
    }
    agent.destroy();
    await explain.end();
    await app.close();

    console.log(`customers ${CUSTOMERS}, log rows ${ROWS}, hourly rollup rows ${hourly}; seed ${seedS.toFixed(0)} s`);
    console.log(
      `metrics refresh (requests_30d for every customer): ${refreshMs.map((m) => m.toFixed(0)).join(", ")} ms`,
    );
    console.log(`\n| case | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|`);
    for (const r of results)
      console.log(`| ${r.case} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.p99.toFixed(1)} |`);
    console.log(`\n${plans.join("\n\n")}`);
  } finally {
    await database.close();
    const c = new pg.Client({ connectionString: SERVER_URL });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  }
}

await main();
