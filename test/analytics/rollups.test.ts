import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RollupJob } from "../../src/modules/analytics/rollup-job.ts";
import { RollupsRepo } from "../../src/modules/analytics/rollups.repo.ts";
import { ALPHA } from "../../src/modules/analytics/sketch.ts";
import type { InferenceLogEntry } from "../../src/modules/inference/inference-logs.repo.ts";
import { Pseudonymizer } from "../../src/platform/pseudonym.ts";
import { owner } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { analytics, insertFeedback, insertLogs, randomEntry, rng, settle, snapshot } from "./helpers.ts";

const DAY = 86_400_000;
const D0 = Date.UTC(2026, 10, 1);

let t: InferenceTestContext;
beforeAll(async () => {
  t = await buildInferenceApp({ ANALYTICS_ROLLUPS: "false" });
});
afterAll(async () => {
  await t?.close();
});

const rowsOf = <T>(res: unknown) => (res as { rows: T[] }).rows;

async function usage(customerId: string, query: string) {
  const res = await t.app.inject({ method: "GET", url: `/v1/analytics/usage?${query}`, headers: owner(customerId) });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as {
    series: {
      group: string | null;
      points: { start: string; requests: number; errors: number; p50_ms: number; p95_ms: number; p99_ms: number }[];
    }[];
    totals: { requests: number; errors: number; p50_ms: number; p95_ms: number; p99_ms: number };
  };
}

describe("analytics rollups", () => {
  it("count every row once: merged-sketch percentiles within 1 % of percentile_cont, replays and reruns change nothing", async () => {
    const { customerId } = await newKey(t);
    const r = rng(42);
    const logs: InferenceLogEntry[] = [];
    for (let i = 0; i < 6000; i++) logs.push(randomEntry(r, customerId, D0 + Math.floor(r() * 3 * DAY)));
    await insertLogs(t.database, logs);
    await settle(t.app, t.database);

    const report = await usage(
      customerId,
      `from=${new Date(D0).toISOString()}&to=${new Date(D0 + 3 * DAY).toISOString()}`,
    );
    expect(report.totals.requests).toBe(6000);
    expect(report.totals.errors).toBe(logs.filter((l) => l.status === "error").length);

    // Exact percentiles over the raw rows, per day and over the whole range, from PostgreSQL.
    const exact = rowsOf<{ day: string | null; p50: number; p95: number; p99: number }>(
      await t.database.db.execute(sql`select to_char(date_trunc('day', created_at at time zone 'UTC'), 'YYYY-MM-DD') as day,
          percentile_cont(0.5) within group (order by total_ms) as p50,
          percentile_cont(0.95) within group (order by total_ms) as p95,
          percentile_cont(0.99) within group (order by total_ms) as p99
        from inference_logs where customer_id = ${customerId}::uuid and status = 'ok'
        group by rollup (1)`),
    );
    const points = report.series[0]?.points ?? [];
    expect(points).toHaveLength(3);
    const within = (est: number, ex: number) => expect(Math.abs(est - ex) / ex).toBeLessThanOrEqual(ALPHA + 1e-9);
    for (const e of exact) {
      const got = e.day === null ? report.totals : points.find((p) => p.start.startsWith(e.day as string));
      expect(got).toBeDefined();
      within(got?.p50_ms as number, Number(e.p50));
      within(got?.p95_ms as number, Number(e.p95));
      within(got?.p99_ms as number, Number(e.p99));
    }

    // Grouped series add up to the totals.
    const byModel = await usage(
      customerId,
      `from=${new Date(D0).toISOString()}&to=${new Date(D0 + 3 * DAY).toISOString()}&group_by=model`,
    );
    expect(byModel.series.reduce((n, s) => n + s.points.reduce((m, p) => m + p.requests, 0), 0)).toBe(6000);

    const before = await snapshot(t.database);
    // A journal replay (same ids: ignored by the insert) and further job runs count nothing again.
    await insertLogs(t.database, logs.slice(0, 500));
    await settle(t.app, t.database);
    await new RollupJob({
      db: t.database.db,
      repo: new RollupsRepo(new Pseudonymizer(t.app.platform.config.auth.secretKey)),
      batchSize: 7,
    }).catchUp(5);
    expect(await snapshot(t.database)).toEqual(before);
  });

  it("counts feedback into the inference's buckets and instructions by their normalized form", async () => {
    const { customerId } = await newKey(t);
    const r = rng(5);
    const a = {
      ...randomEntry(r, customerId, D0 + 3_600_000),
      status: "ok" as const,
      errorCode: null,
      totalMs: 10,
      robotId: "arm-9",
      instruction: "Pick up the cup",
      instructionKey: (await import("../../src/modules/inference/instruction-key.ts")).instructionKey(
        "Pick up the cup",
      ),
    };
    const b = {
      ...a,
      id: crypto.randomUUID(),
      instruction: "  PICK up the  cup",
      createdAt: new Date(D0 + 7_200_000).toISOString(),
    };
    await insertLogs(t.database, [a, b]);
    await insertFeedback(t.database, a, { type: "success", rating: 4 });
    await insertFeedback(t.database, b, { type: "success", rating: 2 });
    await insertFeedback(t.database, a, { type: "correction", errorTranslation: 0.25 });
    await insertFeedback(t.database, b, { type: "failure" });
    await settle(t.app, t.database);

    const res = await t.app.inject({
      method: "GET",
      url: `/v1/analytics/robots?from=${new Date(D0).toISOString()}&to=${new Date(D0 + DAY).toISOString()}`,
      headers: owner(customerId),
    });
    expect(res.statusCode).toBe(200);
    const robot = res.json().data[0];
    expect(robot).toMatchObject({
      robot_id: "arm-9",
      requests: 2,
      feedback: 4,
      mean_success_rating: 3,
      corrections: 1,
      failures: 1,
      mean_correction: { translation: 0.25, rotation: 0.5, gripper: 0 },
    });
    const ins = await t.app.inject({
      method: "GET",
      url: `/v1/analytics/instructions?from=${new Date(D0).toISOString()}&to=${new Date(D0 + DAY).toISOString()}`,
      headers: owner(customerId),
    });
    const data = ins.json().data;
    expect(data).toHaveLength(1);
    expect(data[0]).toMatchObject({ count: 2, mean_success_rating: 3, failure_reports: 1, ratings: 2 });
  });

  it("lands late rows in their own day and rebuild recomputes exactly what the job built", async () => {
    const { customerId } = await newKey(t);
    const r = rng(9);
    await insertLogs(
      t.database,
      Array.from({ length: 300 }, () => randomEntry(r, customerId, D0 + 10 * DAY + Math.floor(r() * 2 * DAY))),
    );
    const job = analytics(t.app).job;
    await settle(t.app, t.database);
    // A replayed journal from days ago, written after the job moved on.
    const late = Array.from({ length: 40 }, () => randomEntry(r, customerId, D0 + 5 * DAY + 1000));
    await insertLogs(t.database, late);
    const logs = late.slice(0, 3);
    for (const l of logs) await insertFeedback(t.database, l, { type: "safety", rating: 5 });
    await settle(t.app, t.database);
    const q = `from=${new Date(D0 + 5 * DAY).toISOString()}&to=${new Date(D0 + 6 * DAY).toISOString()}`;
    const day5 = await usage(customerId, q);
    expect(day5.totals.requests).toBe(40);
    expect(day5.series[0]?.points[0]?.start).toBe(new Date(D0 + 5 * DAY).toISOString());

    const incremental = await snapshot(t.database);
    const progress: number[] = [];
    const res = await job.rebuild(new Date(D0), new Date(D0 + 20 * DAY), (done) => progress.push(done));
    expect(res.ran).toBe(true);
    expect(progress).toEqual(Array.from({ length: 21 }, (_, i) => i));
    expect(await snapshot(t.database)).toEqual(incremental);
    // The job goes on after a rebuild without counting anything twice.
    await settle(t.app, t.database);
    expect(await snapshot(t.database)).toEqual(incremental);
  });

  it.skipIf(process.env.TEST_DATABASE_URL === undefined)(
    "waits for a transaction that is still open (a batch writer committing late) instead of skipping its rows",
    async () => {
      const { customerId } = await newKey(t);
      const r = rng(13);
      const job = analytics(t.app).job;
      await settle(t.app, t.database);
      const url = new URL(process.env.TEST_DATABASE_URL as string);
      // The test app's database: the same server, the database the app was built on.
      const dbName = rowsOf<{ d: string }>(await t.database.db.execute(sql`select current_database() as d`))[0]?.d;
      url.pathname = `/${dbName}`;
      const other = new pg.Client({ connectionString: url.toString() });
      await other.connect();
      try {
        const slow = randomEntry(r, customerId, D0 + 40 * DAY);
        await other.query("begin");
        // Take an xid first, then insert: this transaction is older than the next insert.
        await other.query(
          `insert into inference_logs (id, created_at, customer_id, model, status, total_ms, source)
           values ($1, $2, $3, 'mock-pi0', 'ok', 12, 'rest')`,
          [slow.id, slow.createdAt, customerId],
        );
        await insertLogs(t.database, [randomEntry(r, customerId, D0 + 40 * DAY + 1000)]);
        await job.catchUp(10);
        const q = `from=${new Date(D0 + 40 * DAY).toISOString()}&to=${new Date(D0 + 41 * DAY).toISOString()}`;
        // The open transaction holds the watermark back: the later, committed row waits too.
        expect((await usage(customerId, q)).totals.requests).toBe(0);
        await other.query("commit");
        await settle(t.app, t.database);
        expect((await usage(customerId, q)).totals.requests).toBe(2);
      } finally {
        await other.end();
      }
    },
  );
});
