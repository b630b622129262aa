/**
 * Auth benchmark: `npx node bench/auth.bench.ts` (Node 24 from the dev dependency).
 *
 * Starts the real app on 127.0.0.1 (embedded in-memory PGlite, no Redis, silent logs) and
 * measures, each scenario bounded by BENCH_SECONDS (default 10):
 *   1. POST /auth/token: sign-in latency, dominated by one Argon2id verification (m=19 MiB, t=2).
 *   2. GET /health/live (no auth) and GET /auth/me (JWT verify + deny-list + user lookup), in the
 *      same run and process, so their difference is the cost of authenticating a request.
 *   3. The JWT verification alone (jose HS256), and Argon2id hash/verify alone, in process.
 * Prints a Markdown table; copy it into bench/README.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import path from "node:path";
import autocannon, { type Result } from "autocannon";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { hashPassword, verifyPassword } from "../src/modules/auth/password.ts";
import { AccessTokens } from "../src/modules/auth/tokens.ts";
import { createDatabase } from "../src/platform/db/client.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-auth-"));
const config = loadConfig(
  {
    NODE_ENV: "production",
    ALLOW_EMBEDDED_DB_IN_PRODUCTION: "true",
    SECRET_KEY: "bench-secret-key-that-is-long-enough-0123456789",
    DATA_DIR: dataDir,
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "silent",
    MAX_EVENT_LOOP_DELAY_MS: "0",
  },
  { dotenv: false, persistGeneratedSecret: false },
);

const database = await createDatabase({});
const app = await buildApp(config, { database, migrate: true });
const address = await app.listen({ host: "127.0.0.1", port: 0 });

const email = "bench@example.com";
const password = "correct horse battery staple";
await app.inject({ method: "POST", url: "/auth/register", payload: { email, password } });
const tok = await app.inject({ method: "POST", url: "/auth/token", payload: { username: email, password } });
const access = (tok.json() as { access_token: string }).access_token;

type Row = { scenario: string; connections: number; result: Result };
const rows: Row[] = [];

async function run(scenario: string, connections: number, options: Parameters<typeof autocannon>[0]) {
  const result = await autocannon({ connections, duration: seconds, ...options });
  rows.push({ scenario, connections, result });
  process.stderr.write(`${scenario}: ${result.requests.average} req/s, p50 ${result.latency.p50} ms\n`);
}

await run("POST /auth/token (Argon2id verify)", 4, {
  url: `${address}/auth/token`,
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ username: email, password }).toString(),
});
await run("GET /health/live (no auth)", 10, { url: `${address}/health/live` });
await run("GET /auth/me (JWT)", 10, { url: `${address}/auth/me`, headers: { authorization: `Bearer ${access}` } });
await run("GET /health/live (no auth, again)", 10, { url: `${address}/health/live` });

// In-process micro measurements.
const tokens = new AccessTokens({
  secretKey: config.auth.secretKey,
  issuer: config.auth.issuer,
  audience: config.auth.audience,
  ttlSeconds: 900,
});
const signed = (await tokens.sign({ userId: "00000000-0000-4000-8000-000000000000", tokenVersion: 0, sessionId: "s" }))
  .token;
const n = 20_000;
let t0 = performance.now();
for (let i = 0; i < n; i++) await tokens.verify(signed);
const verifyUs = ((performance.now() - t0) * 1000) / n;
t0 = performance.now();
const hash = await hashPassword(password);
const hashMs = performance.now() - t0;
const verifyRuns = 10;
t0 = performance.now();
for (let i = 0; i < verifyRuns; i++) await verifyPassword(hash, password);
const argonVerifyMs = (performance.now() - t0) / verifyRuns;

await app.close();
await database.close();
rmSync(dataDir, { recursive: true, force: true });

const cpu = cpus()[0]?.model ?? "unknown CPU";
const lines = [
  `Run ${new Date().toISOString()}, ${seconds} s per scenario, ${availableParallelism()} cores (${cpu}), Node ${process.version}, embedded PGlite, no Redis.`,
  "",
  "| scenario | conns | req/s | p50 ms | p97.5 ms | p99 ms | non-2xx |",
  "|---|---|---|---|---|---|---|",
  ...rows.map(
    ({ scenario, connections, result: r }) =>
      `| ${scenario} | ${connections} | ${r.requests.average} | ${r.latency.p50} | ${r.latency.p97_5} | ${r.latency.p99} | ${r.non2xx} |`,
  ),
  "",
  `In process: jose HS256 verify ${verifyUs.toFixed(1)} µs/token; Argon2id hash ${hashMs.toFixed(1)} ms, verify ${argonVerifyMs.toFixed(1)} ms (m=19 MiB, t=2, p=1).`,
];
process.stdout.write(`${lines.join("\n")}\n`);
