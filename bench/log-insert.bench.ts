/**
 * The inference-log batch insert: time per batch of N rows (default 125 and 250), and how much of
 * it is synchronous (event-loop) work, on embedded PGlite or `BENCH_DATABASE_URL`.
 *
 *   npx node bench/log-insert.bench.ts
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { type InferenceLogEntry, InferenceLogsRepo } from "../src/modules/inference/inference-logs.repo.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { inferenceLogs } from "../src/platform/db/schema/index.ts";

const url = process.env.BENCH_DATABASE_URL;
const database = await createDatabase({ url });
await database.migrate();
const repo = new InferenceLogsRepo(database.db);
const customerId = randomUUID();

function row(i: number): InferenceLogEntry {
  return {
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    customerId,
    apiKeyId: randomUUID(),
    userId: null,
    model: "mock-openvla-7b",
    backend: "mock",
    robotId: `arm-${i % 10}`,
    instruction: "pick up the red block",
    instructionSha256: "0".repeat(64),
    imageSha256: "1".repeat(64),
    action: [0.001, -0.002, 0.003, 0.01, -0.02, 0.03, 0.99],
    actionChunk: null,
    unnormKey: "bridge_orig",
    status: "ok",
    errorCode: null,
    preprocessMs: 1.2,
    queueMs: 0.1,
    modelMs: 0.05,
    totalMs: 2.4,
    source: "stream",
    safetyStatus: "pass",
  };
}

/** The query-builder form the repository used before (one placeholder per value). */
async function builder(rows: InferenceLogEntry[]) {
  await database.db
    .insert(inferenceLogs)
    .values(rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt) })))
    .onConflictDoNothing();
}

for (const n of [125, 250]) {
  for (const [name, fn] of [
    ["unnest (current)", (rows: InferenceLogEntry[]) => repo.insertMany(rows)],
    ["query builder (before)", builder],
  ] as const) {
    const total: number[] = [];
    const sync: number[] = [];
    for (let k = 0; k < 30; k++) {
      const rows = Array.from({ length: n }, (_, i) => row(i));
      const t0 = performance.now();
      const p = fn(rows);
      sync.push(performance.now() - t0);
      await p;
      total.push(performance.now() - t0);
    }
    const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]?.toFixed(2);
    console.log(`${database.kind} ${n} rows, ${name}: median total ${med(total)} ms, synchronous part ${med(sync)} ms`);
  }
}
await database.close();
