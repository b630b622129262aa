/**
 * Requests per second of `POST /v1/inference` (mock-openvla-7b, a 224x224 JPEG, an enterprise
 * customer with huge limits: every request is verified, metered in Redis, run, safety-checked and
 * logged) through HAProxy with 1 and with 3 API instances behind it, plus 1 instance without
 * HAProxy. Uses the cluster tier's harness (test/cluster/harness.ts): a fresh PostgreSQL database,
 * `node src/server.ts` processes on loopback, HAProxy from test/cluster/haproxy.cfg.tmpl.
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_REDIS_URL=redis://127.0.0.1:6379 \
 *     npx node bench/cluster.bench.ts
 *
 * (both default to those loopback URLs). BENCH_SECONDS (default 8) per measurement, after a 2 s
 * warm-up; BENCH_CONNECTIONS (default 32). Results to stdout and bench/results/cluster-latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { createDatabase } from "../src/platform/db/client.ts";
import { clusterUnavailable, startCluster } from "../test/cluster/harness.ts";
import { jpeg } from "../test/engine/helpers.ts";
import { seedUnlimitedKey } from "./lib/server.ts";

process.env.TEST_DATABASE_URL ??= "postgres://postgres@127.0.0.1:5432/postgres";
process.env.TEST_REDIS_URL ??= "redis://127.0.0.1:6379";
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

interface Row {
  setup: string;
  instances: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  non2xx: number;
  errors: number;
  load_before: number;
}

async function measure(url: string, key: string, body: string, seconds: number) {
  return autocannon({
    url: `${url}/v1/inference`,
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body,
    connections: CONNECTIONS,
    duration: seconds,
  });
}

async function main() {
  const why = clusterUnavailable();
  if (why !== undefined) throw new Error(`cannot run: ${why}`);
  const image = (await jpeg(224, 224, 1)).toString("base64");
  const body = JSON.stringify({
    image,
    instruction: "pick up the red block",
    model: "mock-openvla-7b",
    unnorm_key: "bridge_orig",
    robot_id: "arm-bench",
  });
  const rows: Row[] = [];
  for (const count of [1, 3]) {
    const c = await startCluster({ count, env: { LOG_LEVEL: "warn" } });
    try {
      const database = await createDatabase({ url: c.databaseUrl, poolMax: 2 });
      const { key } = await seedUnlimitedKey(database);
      await database.close();
      const targets: [string, string][] = [[`HAProxy -> ${count}`, c.url]];
      if (count === 1) targets.push(["direct (no HAProxy)", (c.instances[0] as { url: string }).url]);
      for (const [setup, url] of targets) {
        await measure(url, key, body, 2); // warm-up
        const load = loadavg()[0] ?? 0;
        const r = await measure(url, key, body, SECONDS);
        const row: Row = {
          setup,
          instances: count,
          rps: Math.round(r.requests.average),
          p50_ms: r.latency.p50,
          p99_ms: r.latency.p99,
          non2xx: r.non2xx,
          errors: r.errors,
          load_before: Math.round(load * 10) / 10,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    } finally {
      await c.stop();
    }
  }
  console.log(`\n| setup | requests/s | p50 ms | p99 ms | non-2xx | errors | load avg before |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- |`);
  for (const r of rows) {
    console.log(`| ${r.setup} | ${r.rps} | ${r.p50_ms} | ${r.p99_ms} | ${r.non2xx} | ${r.errors} | ${r.load_before} |`);
  }
  const out = path.join(import.meta.dirname, "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(
    path.join(out, "cluster-latest.json"),
    `${JSON.stringify({ at: new Date().toISOString(), seconds: SECONDS, connections: CONNECTIONS, rows }, null, 2)}\n`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
