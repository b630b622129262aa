import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import { RETENTION_LOCK, type RetentionJob } from "../../src/modules/retention/retention.job.ts";
import { retentionJobs, retentionTicks } from "../../src/modules/retention/retention.module.ts";
import { buildTestApp, type TestContext, usingRealServices } from "../helpers/app.ts";
import {
  ages,
  createCustomer,
  DAY,
  grantRetention,
  insertAt,
  insertInstructionDay,
  instructionDays,
  NOW,
} from "./helpers.ts";

let t: TestContext | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function setup(env: Record<string, string> = {}): Promise<{ ctx: TestContext; job: RetentionJob }> {
  t = await buildTestApp({ now: () => NOW, env });
  const job = retentionJobs.get(t.app.platform);
  if (job === undefined) throw new Error("no retention job");
  return { ctx: t, job };
}

const at = (days: number) => NOW - days * DAY;

describe("retention job", () => {
  it("deletes each customer's rows older than its own retention_days, in every table", async () => {
    const { ctx, job } = await setup();
    const short = await createCustomer(ctx.database, "short");
    const long = await createCustomer(ctx.database, "long");
    const none = await createCustomer(ctx.database, "no-record"); // CONSENT_DEFAULT_TIER basic: 90 days
    await grantRetention(ctx.database, short, 30);
    await grantRetention(ctx.database, long, 365);
    for (const c of [short, long, none]) await insertAt(ctx.database, c, [at(10), at(60), at(200), at(400)]);
    for (const d of [10, 60]) await insertInstructionDay(ctx.database, short, d);
    await insertInstructionDay(ctx.database, long, 60);

    const r = await job.run();
    expect(r.ran).toBe(true);
    // The instruction rollup keeps its counts past retention, not the text.
    expect(r.instructionTextsCleared).toBe(1);
    expect(await instructionDays(ctx.database, short)).toEqual([
      { age: 10, instruction: "pick up the cup", requests: 5 },
      { age: 60, instruction: null, requests: 5 },
    ]);
    expect((await instructionDays(ctx.database, long))[0]?.instruction).toBe("pick up the cup");
    // short keeps 10; long keeps 10, 60, 200; none keeps 10, 60
    expect(r.rows).toEqual({ inference_logs: 3 + 1 + 2, safety_incidents: 6, feedback: 6, shadow_results: 6 });
    const expected = (kept: number[]) => ({
      inference_logs: kept,
      safety_incidents: kept,
      feedback: kept,
      shadow_results: kept,
    });
    expect(await ages(ctx.database, short)).toEqual(expected([10]));
    expect(await ages(ctx.database, long)).toEqual(expected([10, 60, 200]));
    expect(await ages(ctx.database, none)).toEqual(expected([10, 60]));

    const metrics = await ctx.app.platform.metrics.registry.metrics();
    expect(metrics).toContain('vla_retention_rows_deleted_total{table="inference_logs"} 6');
    expect(metrics).toContain('vla_retention_rows_deleted_total{table="feedback"} 6');
    expect(metrics).toContain(`vla_retention_last_run_timestamp_seconds ${NOW / 1000}`);

    // Idempotent: a second run finds nothing and changes nothing.
    const again = await job.run();
    expect(again.rows).toEqual({ inference_logs: 0, safety_incidents: 0, feedback: 0, shadow_results: 0 });
    expect(again.partitions).toEqual([]);
    expect(again.instructionTextsCleared).toBe(0);
    expect(await ages(ctx.database, long)).toEqual(expected([10, 60, 200]));
  });

  it("deletes more rows than one batch holds, batch after batch", async () => {
    const { ctx, job } = await setup({ RETENTION_BATCH_SIZE: "7" });
    const c = await createCustomer(ctx.database, "many");
    await grantRetention(ctx.database, c, 30);
    const old = Array.from({ length: 23 }, (_, i) => at(40 + i));
    await insertAt(ctx.database, c, [...old, at(5)]);
    const r = await job.run();
    expect(r.rows).toEqual({ inference_logs: 23, safety_incidents: 23, feedback: 23, shadow_results: 23 });
    expect(await ages(ctx.database, c)).toEqual({
      inference_logs: [5],
      safety_incidents: [5],
      feedback: [5],
      shadow_results: [5],
    });
  });

  it("a dry run deletes nothing and reports what a run then deletes", async () => {
    const { ctx, job } = await setup();
    const c = await createCustomer(ctx.database, "dry");
    await grantRetention(ctx.database, c, 30);
    await insertAt(ctx.database, c, [at(5), at(45), at(100)]);
    await insertInstructionDay(ctx.database, c, 45);
    const before = await ages(ctx.database, c);
    const dry = await job.run({ dryRun: true });
    expect(dry.instructionTextsCleared).toBe(1);
    expect((await instructionDays(ctx.database, c))[0]?.instruction).toBe("pick up the cup");
    expect(dry).toMatchObject({
      ran: true,
      dryRun: true,
      rows: { inference_logs: 2, safety_incidents: 2, feedback: 2, shadow_results: 2 },
    });
    expect(await ages(ctx.database, c)).toEqual(before);
    const metrics = await ctx.app.platform.metrics.registry.metrics();
    expect(metrics).not.toMatch(/vla_retention_rows_deleted_total\{table="inference_logs"\} [1-9]/);
    const real = await job.run();
    expect(real.rows).toEqual(dry.rows);
    expect(real.instructionTextsCleared).toBe(1);
  });

  it("drops a month's partition once every customer's retention (and the default's) has passed it", async () => {
    const { ctx, job } = await setup();
    const logs = new InferenceLogsRepo(ctx.database.db);
    // Longest retention: 365 days (customer long); cutoff 2025-12-05. 2024-01 and 2025-06 end before it,
    // 2025-12 does not, 2026-06 is recent.
    for (const m of [Date.UTC(2024, 0, 15), Date.UTC(2025, 5, 15), Date.UTC(2025, 11, 15), Date.UTC(2026, 5, 15)]) {
      await logs.ensurePartitions(new Date(m), 0);
    }
    const short = await createCustomer(ctx.database, "short");
    const long = await createCustomer(ctx.database, "long");
    await grantRetention(ctx.database, short, 30);
    await grantRetention(ctx.database, long, 365);
    const rows = [Date.UTC(2024, 0, 20), Date.UTC(2025, 5, 20), Date.UTC(2025, 11, 20), Date.UTC(2026, 5, 20)];
    // 2023-03 has no partition: its rows sit in the DEFAULT partition and go row by row.
    for (const c of [short, long]) await insertAt(ctx.database, c, [Date.UTC(2023, 2, 1), ...rows]);

    const dry = await job.run({ dryRun: true });
    expect(dry.partitions).toEqual(["inference_logs_y2024m01", "inference_logs_y2025m06"]);
    // Row by row: both DEFAULT rows, and short's 2025-12 and 2026-06 rows.
    expect(dry.rows.inference_logs).toBe(4);
    expect(await logs.partitionNames()).toContain("inference_logs_y2024m01");

    const r = await job.run();
    expect(r.partitions).toEqual(["inference_logs_y2024m01", "inference_logs_y2025m06"]);
    expect(r.rows.inference_logs).toBe(4);
    const names = await logs.partitionNames();
    expect(names).not.toContain("inference_logs_y2024m01");
    expect(names).not.toContain("inference_logs_y2025m06");
    expect(names).toEqual(
      expect.arrayContaining([
        "inference_logs_default",
        "inference_logs_y2025m12",
        "inference_logs_y2026m06",
        "inference_logs_y2026m12",
      ]),
    );
    const gone = await ctx.database.db.execute("select to_regclass('inference_logs_y2024m01') as t");
    expect((gone as unknown as { rows: { t: unknown }[] }).rows[0]?.t).toBeNull();
    const d = (x: number) => Math.round((NOW - x) / DAY);
    expect((await ages(ctx.database, long)).inference_logs).toEqual([d(rows[3] as number), d(rows[2] as number)]);
    expect((await ages(ctx.database, short)).inference_logs).toEqual([]);
    // Incidents and feedback are not partitioned: their old rows went row by row.
    expect((await ages(ctx.database, long)).feedback).toEqual([d(rows[3] as number), d(rows[2] as number)]);

    const again = await job.run();
    expect(again.partitions).toEqual([]);
    expect(again.rows).toEqual({ inference_logs: 0, safety_incidents: 0, feedback: 0, shadow_results: 0 });
    const metrics = await ctx.app.platform.metrics.registry.metrics();
    expect(metrics).toContain("vla_retention_partitions_dropped_total 2");
  });

  it("keeps partitions while the default tier's retention has not passed them", async () => {
    // Every customer on 30 days, but a customer created tomorrow starts on the default (research: 730).
    const { ctx, job } = await setup({ CONSENT_DEFAULT_TIER: "research" });
    const logs = new InferenceLogsRepo(ctx.database.db);
    await logs.ensurePartitions(new Date(Date.UTC(2025, 5, 15)), 0);
    const c = await createCustomer(ctx.database, "c");
    await grantRetention(ctx.database, c, 30);
    await insertAt(ctx.database, c, [Date.UTC(2025, 5, 20)]);
    const r = await job.run();
    expect(r.partitions).toEqual([]);
    expect(r.rows.inference_logs).toBe(1);
    expect(await logs.partitionNames()).toContain("inference_logs_y2025m06");
  });

  it("after stop() (shutdown) a run deletes nothing more", async () => {
    const { ctx, job } = await setup();
    const c = await createCustomer(ctx.database, "stopped");
    await grantRetention(ctx.database, c, 30);
    await insertAt(ctx.database, c, [at(100)]);
    await job.stop();
    const r = await job.run();
    expect(r.rows).toEqual({ inference_logs: 0, safety_incidents: 0, feedback: 0, shadow_results: 0 });
    expect((await ages(ctx.database, c)).inference_logs).toEqual([100]);
    expect(await ctx.app.platform.metrics.registry.metrics()).toContain("vla_retention_last_run_timestamp_seconds 0");
  });

  it("a timer tick logs one line with what the run deleted", async () => {
    const lines: string[] = [];
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    t = await buildTestApp({ now: () => NOW, env: { LOG_LEVEL: "info" }, logStream });
    const c = await createCustomer(t.database, "logged");
    await grantRetention(t.database, c, 30);
    await insertAt(t.database, c, [at(100), at(5)]);
    await retentionTicks.get(t.app.platform)?.();
    const runs = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "retention run");
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      deleted: { inference_logs: 1, safety_incidents: 1, feedback: 1, shadow_results: 1 },
      partitionsDropped: [],
      customers: 1,
    });
  });

  it.skipIf(!usingRealServices)("skips the run while another instance holds the lock", async () => {
    const { ctx, job } = await setup();
    const c = await createCustomer(ctx.database, "locked");
    await grantRetention(ctx.database, c, 30);
    await insertAt(ctx.database, c, [at(100)]);
    let inner: Awaited<ReturnType<RetentionJob["run"]>> | undefined;
    await ctx.database.withSessionLock(RETENTION_LOCK, async () => {
      inner = await job.run();
    });
    expect(inner?.ran).toBe(false);
    expect((await ages(ctx.database, c)).inference_logs).toEqual([100]);
    expect((await job.run()).rows.inference_logs).toBe(1);
  });
});
