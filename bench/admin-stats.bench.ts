/**
 * The operators' statistics at scale: `GET /admin/stats` and `GET /admin/stats/revenue` on
 * PostgreSQL with 10,000 customers.
 *
 *   npm run bench:admin-stats
 *     BENCH_DATABASE_URL  a PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres);
 *                         the bench creates a fresh database on it and drops it at the end
 *     BENCH_CUSTOMERS     customers (default 10,000)
 *     BENCH_REQUESTS      requests the rollups stand for, over 30 days (default 5,000,000)
 *     BENCH_ITERATIONS    requests per route measured (default 200)
 *
 * Seeded with generate_series: customers (82 % free, 16.5 % pro, 1.5 % enterprise, created over a
 * year) with one user each; hourly rollups standing for BENCH_REQUESTS requests over the last 30
 * days (each day a fifth of the customers active for 4 hours, lognormal-ish latency sketches,
 * 0.5 % errors), the daily rollups and usage counters summed from them; 200,000 safety incidents;
 * 1,800 paying subscriptions with 1 to 3 recorded changes each. Then ANALYZE, then each route
 * BENCH_ITERATIONS times in process (app.inject, superuser JWT), p50/p95/p99, and EXPLAIN
 * (ANALYZE, BUFFERS) of the main queries.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "drizzle-orm";
import pg from "pg";
import { buildApp } from "../src/app.ts";
import { encodeSketch, Sketch } from "../src/modules/analytics/sketch.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { benchConfig } from "./lib/server.ts";

const SERVER_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const CUSTOMERS = Number(process.env.BENCH_CUSTOMERS ?? 10_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 5_000_000);
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 200);
const DAY = 86_400_000;

function pct(values: number[], p: number): number {
  const x = values.slice().sort((a, b) => a - b);
  return x[Math.min(x.length - 1, Math.floor((p / 100) * x.length))] as number;
}

/** Eight latency sketches (about 20 requests each) the hourly rows cycle through, as hex literals. */
function sketchLiterals(): string[] {
  const out: string[] = [];
  for (let k = 0; k < 8; k++) {
    const s = new Sketch();
    for (let i = 0; i < 20; i++) s.add(Math.exp(3.5 + 0.5 * Math.sin(k * 7 + i * 13) + (i === 19 ? 1.2 : 0)));
    out.push(`'\\x${encodeSketch(s).toString("hex")}'::bytea`);
  }
  return out;
}

const name = `vla_bench_admin_${randomBytes(4).toString("hex")}`;
const admin = new pg.Client({ connectionString: SERVER_URL });
await admin.connect();
await admin.query(`create database ${name}`);
await admin.end();
const url = new URL(SERVER_URL);
url.pathname = `/${name}`;

const database = await createDatabase({ url: url.toString(), poolMax: 10 });
const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-admin-"));
const app = await buildApp(benchConfig(dataDir, { ANALYTICS_ROLLUPS: "false", MODELS_WARM_UP: "false" }), {
  database,
  migrate: true,
});
const db = database.db;
const exec = (q: ReturnType<typeof sql>) => db.execute(q);
const now = Date.now();
const today = Math.floor(now / DAY) * DAY;

try {
  let t0 = performance.now();
  const email = `root-${randomBytes(4).toString("hex")}@example.com`;
  const password = "correct horse battery staple 42";
  const reg = await app.inject({ method: "POST", url: "/auth/register", payload: { email, password } });
  if (reg.statusCode !== 201) throw new Error(`register: ${reg.body}`);
  await exec(sql`update users set is_superuser = true where email = ${email}`);
  const tok = await app.inject({ method: "POST", url: "/auth/token", payload: { username: email, password } });
  const access = (tok.json() as { access_token: string }).access_token;

  await exec(sql`insert into customers (name, email, company, tier, created_at)
    select 'customer ' || i, 'c' || i || '@bench.example', 'company ' || (i % 997),
      (case when i % 1000 < 820 then 'free' when i % 1000 < 985 then 'pro' else 'enterprise' end)::customer_tier,
      now() - (i % 365) * interval '1 day' - (i % 24) * interval '1 hour'
    from generate_series(1, ${CUSTOMERS}) i`);
  await exec(sql`insert into users (customer_id, email, password_hash)
    select id, 'u-' || email, 'bench-no-login' from customers where email like '%@bench.example'`);
  console.error(`customers and users: ${Math.round(performance.now() - t0)} ms`);

  // Hourly rollups: per day, customers with (id_rank + day) % 5 = 0 are active, in 4 hours each.
  t0 = performance.now();
  const activePerDay = Math.ceil(CUSTOMERS / 5);
  const rows = activePerDay * 4 * 30;
  const perRow = Math.max(1, Math.round(REQUESTS / rows));
  const sketches = sketchLiterals();
  await exec(
    sql.raw(`insert into usage_hourly_metrics (customer_id, hour, model, source, api_key_id, requests, errors, latency_total, first_seen, last_seen)
    select c.id, date_trunc('day', now()) - d * interval '1 day' + ((c.rn * 7 + h * 5) % 24) * interval '1 hour',
      'openvla-7b', 'rest', '00000000-0000-0000-0000-000000000000',
      ${perRow}, case when (c.rn + d + h) % 40 = 0 then ${perRow} else 0 end,
      (array[${sketches.join(",")}])[1 + (c.rn + h + d) % 8],
      now() - d * interval '1 day', now() - d * interval '1 day'
    from (select id, row_number() over (order by id) as rn from customers where email like '%@bench.example') c
    cross join generate_series(0, 29) d cross join generate_series(0, 3) h
    where (c.rn + d) % 5 = 0
    on conflict do nothing`),
  );
  await exec(sql`insert into robot_performance_metrics (customer_id, day, robot_id, model, requests, errors)
    select customer_id, (hour at time zone 'UTC')::date, 'arm-1', model, sum(requests), sum(errors)
    from usage_hourly_metrics group by 1, 2, 4`);
  await exec(sql`insert into usage_counters (customer_id, month, requests)
    select customer_id, date_trunc('month', day)::date, sum(requests) from robot_performance_metrics group by 1, 2`);
  await exec(sql`insert into analytics_watermarks (name, xid, row_id, row_at)
    values ('inference_logs', 1, '00000000-0000-0000-0000-000000000000', now())`);
  console.error(`rollups (${rows} hourly rows of ${perRow} requests): ${Math.round(performance.now() - t0)} ms`);

  t0 = performance.now();
  await exec(sql`insert into safety_incidents (customer_id, robot_id, violation_type, severity, action_taken, at)
    select c.id, 'arm-' || (i % 7), 'linear_velocity',
      (array['low','medium','high','critical'])[1 + i % 4], 'clamped', now() - (i % 43200) * interval '1 minute'
    from generate_series(1, 200000) i
    join (select id, row_number() over (order by id) as rn from customers) c on c.rn = 1 + i % ${CUSTOMERS}`);
  // Paying customers: pro at 29.00 or 290.00 / year, enterprise at 499.00; some upgraded, some churned, some past due.
  await exec(sql`with paying as (
      select id, row_number() over (order by id) as rn, tier from customers where tier <> 'free')
    insert into subscription_changes (customer_id, at, source, stripe_subscription_id, stripe_price_id, status,
      price_tier, unit_amount, quantity, interval, mrr_before, currency_before, mrr_after, currency_after)
    select id, now() - ((rn % 90) + 1) * interval '1 day', 'webhook', 'sub_' || rn, 'price_' || tier, 'active', tier::text,
      case when tier = 'enterprise' then 49900 when rn % 4 = 0 then 29000 else 2900 end, 1,
      case when tier <> 'enterprise' and rn % 4 = 0 then 'year' else 'month' end,
      0, null, case when tier = 'enterprise' then 49900 when rn % 4 = 0 then 2417 else 2900 end, 'usd'
    from paying`);
  await exec(sql`insert into subscription_changes (customer_id, at, source, stripe_subscription_id, stripe_price_id, status,
      price_tier, unit_amount, quantity, interval, mrr_before, currency_before, mrr_after, currency_after)
    select s.customer_id, now() - (random() * 20) * interval '1 day', 'webhook', s.stripe_subscription_id, s.stripe_price_id,
      case when r.rn % 3 = 0 then 'past_due' when r.rn % 3 = 1 then 'canceled' else 'active' end, s.price_tier,
      s.unit_amount, case when r.rn % 3 = 2 then 2 else 1 end, s.interval, s.mrr_after, 'usd',
      case when r.rn % 3 = 1 then 0 when r.rn % 3 = 2 then s.mrr_after * 2 else s.mrr_after end, 'usd'
    from subscription_changes s join (select customer_id, row_number() over (order by customer_id) as rn
      from subscription_changes) r on r.customer_id = s.customer_id
    where r.rn % 5 = 0`);
  await exec(sql`update customers c set subscription_status = l.status, stripe_subscription_id = l.stripe_subscription_id
    from (select distinct on (customer_id) customer_id, status, stripe_subscription_id from subscription_changes
          order by customer_id, at desc) l where l.customer_id = c.id`);
  await exec(sql`vacuum analyze`);
  console.error(`incidents and subscriptions: ${Math.round(performance.now() - t0)} ms`);

  const headers = { authorization: `Bearer ${access}` };
  const measure = async (route: string) => {
    const times: number[] = [];
    for (let i = 0; i < ITERATIONS + 10; i++) {
      const s = performance.now();
      const res = await app.inject({ method: "GET", url: route, headers });
      const ms = performance.now() - s;
      if (res.statusCode !== 200) throw new Error(`${route}: ${res.statusCode} ${res.body}`);
      if (i >= 10) times.push(ms); // the first ten warm the plan cache and the pool
    }
    return { p50: pct(times, 50), p95: pct(times, 95), p99: pct(times, 99) };
  };
  const results: Record<string, { p50: number; p95: number; p99: number }> = {};
  for (const route of ["/admin/stats", "/admin/stats?limit=100", "/admin/stats/revenue"]) {
    results[route] = await measure(route);
  }
  const sample = (await app.inject({ method: "GET", url: "/admin/stats", headers })).json() as Record<string, unknown>;

  const explain = async (label: string, q: ReturnType<typeof sql>) => {
    const res = await db.execute(sql`explain (analyze, buffers, costs off) ${q}`);
    const plan = (res as unknown as { rows: { "QUERY PLAN": string }[] }).rows.map((r) => r["QUERY PLAN"]);
    console.log(`\n-- ${label}\n${plan.join("\n")}`);
  };
  const todayStart = new Date(today);
  const monthStart = new Date(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1));
  const monthDate = monthStart.toISOString().slice(0, 10);
  await explain(
    "today's hourly rollups (requests, errors, latency sketches)",
    sql`select requests::float8, errors::float8, latency_total from usage_hourly_metrics where hour >= ${todayStart}`,
  );
  await explain(
    "active customers, 30 days",
    sql`select count(*) from (select distinct customer_id from robot_performance_metrics
        where day >= ${new Date(today - 29 * DAY).toISOString().slice(0, 10)}) a`,
  );
  await explain(
    "top customers this month",
    sql`select u.customer_id, c.name, c.email, c.tier, u.requests from usage_counters u join customers c on c.id = u.customer_id
        where u.month = ${monthDate} and u.requests > 0 order by u.requests desc, u.customer_id desc limit 10`,
  );
  await explain(
    "incidents today by severity",
    sql`select severity, count(*) from safety_incidents where at >= ${todayStart} group by severity`,
  );
  await explain(
    "current MRR (latest change per customer)",
    sql`select currency_after, coalesce(price_tier, 'unknown'), status, count(*), sum(mrr_after)
        from (select distinct on (customer_id) customer_id, currency_after, price_tier, status, mrr_after
              from subscription_changes order by customer_id, at desc, id desc) latest
        where mrr_after > 0 group by 1, 2, 3`,
  );

  console.log("\n| route | p50 (ms) | p95 (ms) | p99 (ms) |\n| --- | --- | --- | --- |");
  for (const [route, r] of Object.entries(results)) {
    console.log(`| \`GET ${route}\` | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.p99.toFixed(1)} |`);
  }
  console.log(
    `\n${CUSTOMERS} customers, ${rows} hourly rollup rows (${rows * perRow} requests), ` +
      `${JSON.stringify((sample.customers as Record<string, unknown>) ?? {})}`,
  );
} finally {
  await app.close();
  await database.close();
  const c = new pg.Client({ connectionString: SERVER_URL });
  await c.connect();
  await c.query(`drop database if exists ${name} with (force)`);
  await c.end();
}
