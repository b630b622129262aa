import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type InferenceLogEntry,
  InferenceLogsRepo,
  monthPartition,
} from "../../src/modules/inference/inference-logs.repo.ts";
import { BatchWriter, createBatchWriterMetrics } from "../../src/platform/batch-writer.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, newKey } from "./helpers.ts";

let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp({ LOG_INSTRUCTIONS: "false" });
  img = (await jpeg(64, 64, 5)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

function entry(customerId: string, i: number): InferenceLogEntry {
  return {
    id: randomUUID(),
    createdAt: new Date(Date.UTC(2026, 10, 26, 12, 0, i)).toISOString(),
    customerId,
    apiKeyId: null,
    userId: null,
    model: "mock-openvla-7b",
    backend: "mock",
    robotId: "arm-outage",
    instruction: null,
    instructionSha256: "0".repeat(64),
    imageSha256: "1".repeat(64),
    action: [0, 0, 0, 0, 0, 0, 1],
    actionChunk: null,
    unnormKey: "bridge_orig",
    status: "ok",
    errorCode: null,
    preprocessMs: 1,
    queueMs: 0,
    modelMs: 0.1,
    totalMs: 2,
    source: "rest",
    safetyStatus: "pass",
  };
}

describe("inference_logs", () => {
  it("is partitioned by month: current and next two months exist, plus a default partition", async () => {
    const repo = new InferenceLogsRepo(t.database.db);
    const names = await repo.partitionNames();
    const now = new Date(t.clock.now());
    for (const ahead of [0, 1, 2]) expect(names).toContain(monthPartition(now, ahead).name);
    expect(names).toContain("inference_logs_default");
    // Idempotent; further months appear when the clock moves on.
    expect((await repo.ensurePartitions(now)).created).toEqual([]);
    const later = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 15));
    expect((await repo.ensurePartitions(later)).created).toEqual([monthPartition(later, 2).name]);
    // A row lands in its month's partition; one far outside lands in the default partition.
    const c = await newKey(t);
    await repo.insertMany([
      entry(c.customerId, 1),
      { ...entry(c.customerId, 2), createdAt: "2001-01-01T00:00:00.000Z" },
    ]);
    const where = await t.database.db.execute<{ part: string }>(
      `select tableoid::regclass::text as part from inference_logs where customer_id = '${c.customerId}' order by created_at` as never,
    );
    const parts = (where as unknown as { rows: { part: string }[] }).rows.map((r) => r.part.replaceAll('"', ""));
    expect(parts).toEqual(["inference_logs_default", monthPartition(new Date(Date.UTC(2026, 10, 26)), 0).name]);
  });

  it("keeps only the instruction's hash when LOG_INSTRUCTIONS=false", async () => {
    const c = await newKey(t);
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": c.key },
      payload: { image: img, instruction: "secret task", robot_id: "arm-p", unnorm_key: "bridge_orig" },
    });
    expect(res.statusCode).toBe(200);
    await flushLogs(t.app);
    const row = await t.app.inject({
      method: "GET",
      url: `/v1/inference/${res.json().inference_id}`,
      headers: { "x-api-key": c.key },
    });
    expect(row.json().instruction).toBeNull();
    expect(row.json().instruction_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("survives a database outage: rows are journalled, then replayed when the database answers", async () => {
    const c = await newKey(t);
    const repo = new InferenceLogsRepo(t.database.db);
    let down = true;
    const dir = mkdtempSync(path.join(tmpdir(), "vla-journal-"));
    const metrics = createBatchWriterMetrics(new Registry());
    const options = {
      name: "inference-logs-test",
      journalDir: dir,
      metrics,
      log: pino({ level: "silent" }),
      replayIntervalMs: 50,
      sink: {
        write: async (rows: readonly InferenceLogEntry[]) => {
          if (down) throw new Error("connection refused");
          await repo.insertMany(rows);
        },
      },
    };
    try {
      const writer = new BatchWriter<InferenceLogEntry>(options);
      await writer.start();
      const rows = Array.from({ length: 30 }, (_, i) => entry(c.customerId, i));
      for (const r of rows) writer.push(r);
      await writer.flush();
      expect((await metrics.spilled.get()).values[0]?.value).toBe(30);
      expect(readdirSync(dir).length).toBeGreaterThan(0);
      expect(await repo.list(c.customerId, {}, undefined, 100)).toHaveLength(0);

      // Still down at shutdown: the journal stays for the next start.
      await writer.close();
      down = false;
      const next = new BatchWriter<InferenceLogEntry>(options);
      await next.start(); // replays the journal
      const stored = await repo.list(c.customerId, {}, undefined, 100);
      expect(new Set(stored.map((r) => r.id))).toEqual(new Set(rows.map((r) => r.id)));
      expect((await metrics.replayed.get()).values[0]?.value).toBe(30);
      expect((await metrics.dropped.get()).values.every((v) => v.value === 0)).toBe(true);
      // Replaying the same rows twice stores them once.
      await repo.insertMany(rows.slice(0, 5));
      expect(await repo.list(c.customerId, {}, undefined, 100)).toHaveLength(30);
      await next.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("recovers in place: a failing batch is replayed by the running writer once the sink works", async () => {
    const c = await newKey(t);
    const repo = new InferenceLogsRepo(t.database.db);
    let down = true;
    const dir = mkdtempSync(path.join(tmpdir(), "vla-journal-"));
    const writer = new BatchWriter<InferenceLogEntry>({
      name: "inference-logs-live",
      journalDir: dir,
      metrics: createBatchWriterMetrics(new Registry()),
      log: pino({ level: "silent" }),
      replayIntervalMs: 20,
      sink: {
        write: async (rows) => {
          if (down) throw new Error("database unavailable");
          await repo.insertMany(rows);
        },
      },
    });
    try {
      await writer.start();
      for (let i = 0; i < 10; i++) writer.push(entry(c.customerId, i));
      await writer.flush();
      down = false;
      let stored = 0;
      for (let i = 0; i < 200 && stored < 10; i++) {
        await new Promise((r) => setTimeout(r, 25));
        stored = (await repo.list(c.customerId, {}, undefined, 100)).length;
      }
      expect(stored).toBe(10);
    } finally {
      await writer.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the deletion hook removes a customer's logs, including rows still buffered", async () => {
    const c = await newKey(t);
    const keep = await newKey(t);
    for (const k of [c.key, keep.key]) {
      const res = await t.app.inject({
        method: "POST",
        url: "/v1/inference",
        headers: { "x-api-key": k },
        payload: { image: img, instruction: "pick", robot_id: "arm-d", unnorm_key: "bridge_orig" },
      });
      expect(res.statusCode).toBe(200);
    }
    await flushLogs(t.app);
    // One more row still in the buffer when the erasure runs.
    await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": c.key },
      payload: { image: img, instruction: "pick", robot_id: "arm-d", unnorm_key: "bridge_orig" },
    });
    const platform = t.app.platform;
    expect(platform.deletion.names).toContain("inference-logs");
    const userId = randomUUID();
    const counts = await t.database.db.transaction((tx) =>
      platform.deletion.run({ tx, userId, customerId: c.customerId }, true),
    );
    expect(counts.inference_logs).toBeGreaterThanOrEqual(1);
    await platform.deletion.afterCommit({ userId, customerId: c.customerId, wholeCustomer: true });
    const repo = new InferenceLogsRepo(t.database.db);
    expect(await repo.list(c.customerId, {}, undefined, 100)).toHaveLength(0);
    expect(await repo.list(keep.customerId, {}, undefined, 100)).toHaveLength(1);
  });
});
