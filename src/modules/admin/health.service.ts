import type { ComponentReport } from "../../platform/health.ts";
import type { JobState } from "../../platform/jobs.ts";
import type { Platform } from "../../platform/platform.ts";
import type { ModelBackendReport } from "../inference/inference.service.ts";
import { InferenceLogsRepo, monthPartition } from "../inference/inference-logs.repo.ts";

type Status = "ok" | "degraded" | "down";

export interface WriterReport {
  readonly writer: string;
  readonly buffered: number;
  readonly written: number;
  readonly spilled: number;
  readonly replayed: number;
  readonly dropped: number;
  readonly dead_lettered: number;
}

export interface DeepHealth {
  readonly status: Status;
  readonly checked_at: string;
  readonly checks: Record<string, ComponentReport>;
  readonly database: {
    readonly kind: string;
    readonly status: string;
    readonly round_trip_ms: number | null;
    readonly error: string | null;
    readonly pool: { max: number; total: number; idle: number; waiting: number } | null;
    readonly partitions: { readonly expected: string[]; readonly missing: string[]; readonly default_present: boolean };
  };
  readonly redis: { readonly status: string; readonly round_trip_ms: number | null; readonly error: string | null };
  readonly models: ModelBackendReport[];
  readonly batch_writers: WriterReport[];
  readonly jobs: JobState[];
}

const ms = (t0: number) => Math.round((performance.now() - t0) * 100) / 100;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Counter values by `writer` label from the app's registry (the batch writers' shared metrics). */
async function byWriter(platform: Platform, name: string): Promise<Map<string, number>> {
  const metric = platform.metrics.registry.getSingleMetric(name);
  const out = new Map<string, number>();
  if (metric === undefined) return out;
  for (const v of (await metric.get()).values) {
    const w = v.labels.writer;
    if (typeof w === "string") out.set(w, (out.get(w) ?? 0) + v.value);
  }
  return out;
}

/**
 * `GET /admin/monitoring/health`: the `/health` checks (run the same way, concurrently with their
 * timeout) plus the details an operator needs: database round trip, pool and partitions created
 * ahead, Redis round trip, every model backend and endpoint circuit, batch writer counters and
 * the background jobs' last and next runs. Status: `/health`'s, lowered to degraded when an
 * `inference_logs` partition ahead is missing or a job's last run failed.
 */
export async function deepHealth(platform: Platform): Promise<DeepHealth> {
  const nowMs = platform.now();
  const database = async () => {
    const t0 = performance.now();
    try {
      await platform.database.ping();
      return { round_trip_ms: ms(t0), error: null };
    } catch (e) {
      return { round_trip_ms: null, error: message(e) };
    }
  };
  const partitions = async () => {
    const expected = [0, 1, 2].map((i) => monthPartition(new Date(nowMs), i).name);
    try {
      const names = new Set(await new InferenceLogsRepo(platform.database.db).partitionNames());
      return {
        expected,
        missing: expected.filter((n) => !names.has(n)),
        default_present: names.has("inference_logs_default"),
      };
    } catch {
      return { expected, missing: expected, default_present: false };
    }
  };
  const redis = async () => {
    if (platform.redis.client === null) return { status: "disabled", round_trip_ms: null, error: null };
    const t0 = performance.now();
    try {
      await platform.redis.ping();
      return { status: "ok", round_trip_ms: ms(t0), error: null };
    } catch (e) {
      return { status: "down", round_trip_ms: null, error: message(e) };
    }
  };
  const writers = async (): Promise<WriterReport[]> => {
    const [buffered, written, spilled, replayed, dropped, dead] = await Promise.all(
      [
        "vla_batch_rows_buffered",
        "vla_batch_rows_written_total",
        "vla_batch_rows_spilled_total",
        "vla_batch_rows_replayed_total",
        "vla_batch_rows_dropped_total",
        "vla_batch_rows_dead_lettered_total",
      ].map((n) => byWriter(platform, n)),
    );
    const names = new Set([buffered, written, spilled, replayed, dropped, dead].flatMap((m) => [...(m?.keys() ?? [])]));
    return [...names].sort().map((writer) => ({
      writer,
      buffered: buffered?.get(writer) ?? 0,
      written: written?.get(writer) ?? 0,
      spilled: spilled?.get(writer) ?? 0,
      replayed: replayed?.get(writer) ?? 0,
      dropped: dropped?.get(writer) ?? 0,
      dead_lettered: dead?.get(writer) ?? 0,
    }));
  };
  const [run, db, parts, r, models, batch] = await Promise.all([
    platform.health.run(),
    database(),
    partitions(),
    redis(),
    platform.engine.backendReports(),
    writers(),
  ]);
  const jobs = platform.jobs.list();
  let status: Status = run.status;
  if (status === "ok" && (parts.missing.length > 0 || jobs.some((j) => j.last_outcome === "failed"))) {
    status = "degraded";
  }
  return {
    status,
    checked_at: new Date(nowMs).toISOString(),
    checks: run.checks,
    database: {
      kind: platform.database.kind,
      status: run.checks.database?.status ?? (db.error === null ? "ok" : "down"),
      round_trip_ms: db.round_trip_ms,
      error: db.error,
      pool: platform.database.poolStats?.() ?? null,
      partitions: parts,
    },
    redis: r,
    models,
    batch_writers: batch,
    jobs,
  };
}
