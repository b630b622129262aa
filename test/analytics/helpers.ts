import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { App } from "../../src/app.ts";
import { analyticsContexts } from "../../src/modules/analytics/analytics.module.ts";
import { type InferenceLogEntry, InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import { instructionKey } from "../../src/modules/inference/instruction-key.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { feedback } from "../../src/platform/db/schema/index.ts";

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const INSTRUCTIONS = ["Pick up the cup", "  pick UP the   cup ", "open the drawer", "wipe the table"];
export const ROBOTS = ["arm-1", "arm-2", null];
export const MODELS = ["mock-openvla-7b", "mock-pi0"];

/** A random log row of `customerId` at `at`. */
export function randomEntry(
  r: () => number,
  customerId: string,
  at: number,
  apiKeyId: string | null = null,
): InferenceLogEntry {
  const instruction = INSTRUCTIONS[Math.floor(r() * INSTRUCTIONS.length)] as string;
  const error = r() < 0.1;
  const u = Math.max(r(), 1e-9);
  const total = 20 * Math.exp(0.8 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()));
  const verdicts = ["pass", "pass", "pass", "clamped", "rejected", "emergency_stop"];
  return {
    id: randomUUID(),
    createdAt: new Date(at).toISOString(),
    customerId,
    apiKeyId,
    userId: null,
    model: MODELS[Math.floor(r() * MODELS.length)] as string,
    backend: "mock",
    robotId: ROBOTS[Math.floor(r() * ROBOTS.length)] ?? null,
    instruction,
    instructionSha256: null,
    instructionKey: instructionKey(instruction),
    imageSha256: null,
    action: null,
    actionChunk: null,
    unnormKey: null,
    status: error ? "error" : "ok",
    errorCode: error ? (r() < 0.5 ? "model_overloaded" : "invalid_image") : null,
    preprocessMs: 1,
    queueMs: error ? null : total * 0.1,
    modelMs: error ? null : total * 0.8,
    totalMs: error ? 0.5 : total,
    source: r() < 0.7 ? "rest" : "act",
    safetyStatus: error ? null : (verdicts[Math.floor(r() * verdicts.length)] as string),
  };
}

export async function insertLogs(database: Database, rows: InferenceLogEntry[]): Promise<void> {
  const repo = new InferenceLogsRepo(database.db);
  for (let i = 0; i < rows.length; i += 1000) await repo.insertMany(rows.slice(i, i + 1000));
}

export async function insertFeedback(
  database: Database,
  log: InferenceLogEntry,
  f: { type: string; rating?: number; errorTranslation?: number },
): Promise<void> {
  await database.db.insert(feedback).values({
    customerId: log.customerId,
    inferenceId: log.id,
    inferenceCreatedAt: new Date(log.createdAt),
    robotId: log.robotId,
    model: log.model,
    source: log.source,
    type: f.type,
    rating: f.rating ?? null,
    errorTranslation: f.errorTranslation ?? null,
    errorRotation: f.errorTranslation === undefined ? null : 0.5,
    errorGripper: f.errorTranslation === undefined ? null : 0,
  });
}

export function analytics(app: App) {
  const ctx = analyticsContexts.get(app.platform);
  if (ctx === undefined) throw new Error("no analytics module");
  return ctx;
}

/**
 * Runs the rollup job until it has counted every row now in inference_logs and feedback. On a
 * shared PostgreSQL server another database's open write transaction holds the job's bound back
 * for a moment (transaction ids are cluster-wide), so this retries briefly instead of one pass.
 */
export async function settle(app: App, database: Database): Promise<void> {
  const { job } = analytics(app);
  for (let i = 0; i < 400; i++) {
    await job.catchUp(1_000);
    const res = await database.db.execute(sql`select
        (select count(*) from inference_logs l, analytics_watermarks w where w.name = 'inference_logs'
           and (l.ingest_xid, l.id, l.created_at) > (w.xid, w.row_id, w.row_at))
        + (select count(*) from inference_logs where not exists (select 1 from analytics_watermarks where name = 'inference_logs'))
        + (select count(*) from feedback f, analytics_watermarks w where w.name = 'feedback'
           and (f.ingest_xid, f.id) > (w.xid, w.row_id))
        + (select count(*) from feedback where not exists (select 1 from analytics_watermarks where name = 'feedback'))
        as pending`);
    if (Number((res as unknown as { rows: { pending: unknown }[] }).rows[0]?.pending) === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("the rollup job did not catch up");
}

/** Every rollup row, sorted, for comparing two states of the tables. */
export async function snapshot(database: Database): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const table of ["robot_performance_metrics", "usage_hourly_metrics", "instruction_analytics"]) {
    const res = await database.db.execute(sql`select * from ${sql.identifier(table)}`);
    const rows = (res as unknown as { rows: Record<string, unknown>[] }).rows.map((r) =>
      JSON.stringify({ table, ...r }, (_k, v) => (typeof v === "bigint" ? Number(v) : v)),
    );
    out.push(...rows.sort());
  }
  return out;
}
