import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq, inArray } from "drizzle-orm";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/app.ts";
import { inferenceLogWriters } from "../src/modules/inference/inference.module.ts";
import { type InferenceLogEntry, InferenceLogsRepo } from "../src/modules/inference/inference-logs.repo.ts";
import { UsageRepo } from "../src/modules/rate-limit/usage.repo.ts";
import { UsageRecorder } from "../src/modules/rate-limit/usage-recorder.ts";
import type { IncidentRow } from "../src/modules/safety/incidents.ts";
import { safetyWriters } from "../src/modules/safety/safety.module.ts";
import { BatchWriter, createBatchWriterMetrics } from "../src/platform/batch-writer.ts";
import { createDatabase, type Database } from "../src/platform/db/client.ts";
import { customers, inferenceLogs, safetyIncidents } from "../src/platform/db/schema/index.ts";
import { isolatedDatabase, usingRealServices } from "./helpers/app.ts";
import { seedCustomer } from "./helpers/limits.ts";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, newKey } from "./inference/helpers.ts";

/**
 * The platform batch writers against the real database (embedded PGlite, or PostgreSQL with
 * TEST_DATABASE_URL): a row the database refuses must not take the other rows of its batch,
 * other customers' included, down with it. Both databases refuse a NUL byte in text (22021).
 */

function logEntry(customerId: string, over: Partial<InferenceLogEntry> = {}): InferenceLogEntry {
  return {
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    customerId,
    apiKeyId: null,
    userId: null,
    model: "mock-openvla-7b",
    backend: "mock",
    robotId: "arm-1",
    instruction: "pick up the cup",
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
    ...over,
  };
}

interface DeadLetter {
  writer: string;
  error: { code: string | null; message: string };
  row: { id?: string; robotId?: string };
}

function deadLetters(dataDir: string, writer: string): DeadLetter[] {
  const f = path.join(dataDir, "journal", `${writer}.dead.jsonl`);
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as DeadLetter);
}

async function counter(app: App, name: string, writer: string): Promise<number> {
  const m = await app.platform.metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => v.labels.writer === writer)?.value ?? 0;
}

async function storedLogIds(t: InferenceTestContext, ids: string[]): Promise<string[]> {
  const rows = await t.database.db
    .select({ id: inferenceLogs.id })
    .from(inferenceLogs)
    .where(inArray(inferenceLogs.id, ids));
  return rows.map((r) => r.id).sort();
}

describe(`batch writers with a bad row (${usingRealServices ? "PostgreSQL" : "PGlite"})`, () => {
  let t: InferenceTestContext;
  beforeAll(async () => {
    t = await buildInferenceApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("inference-logs: every other customer's row of the batch is stored, the bad rows are dead-lettered", async () => {
    const a = await newKey(t);
    const b = await newKey(t);
    const good = [
      logEntry(a.customerId),
      logEntry(b.customerId),
      logEntry(a.customerId, { instruction: null }),
      logEntry(b.customerId, { source: "stream" }),
      logEntry(a.customerId),
    ];
    const bad = [
      logEntry(b.customerId, { instruction: "pick\u0000up" }),
      logEntry(a.customerId, { unnormKey: "bridge\u0000orig" }),
      logEntry(b.customerId, { model: "\u0000" }),
      // Beyond the `real` column's range, a customer id that is no uuid, a time that is no time.
      logEntry(a.customerId, { preprocessMs: 1e39 }),
      logEntry("not-a-customer-id"),
      logEntry(b.customerId, { createdAt: "yesterday-ish" }),
    ];
    const writer = inferenceLogWriters.get(t.app.platform);
    if (writer === undefined) throw new Error("no inference log writer");
    const deadBefore = await counter(t.app, "vla_batch_rows_dead_lettered_total", "inference-logs");
    // One batch, bad rows in between the good ones.
    for (let i = 0; i < Math.max(good.length, bad.length); i++) {
      const g = good[i];
      const x = bad[i];
      if (g !== undefined) writer.push(g);
      if (x !== undefined) writer.push(x);
    }
    await flushLogs(t.app);

    expect(
      await storedLogIds(
        t,
        good.map((r) => r.id),
      ),
    ).toEqual(good.map((r) => r.id).sort());
    expect(
      await storedLogIds(
        t,
        bad.map((r) => r.id),
      ),
    ).toEqual([]);
    const dead = deadLetters(t.app.platform.config.dataDir, "inference-logs");
    expect(dead.map((d) => d.row.id).sort()).toEqual(bad.map((r) => r.id).sort());
    const codes = bad.map((row) => dead.find((d) => d.row.id === row.id)?.error.code);
    expect(codes.slice(0, 5)).toEqual(["22021", "22021", "22021", "22003", "22P02"]);
    expect(codes[5]).toMatch(/^22/);
    for (const d of dead) expect(d.writer).toBe("inference-logs");
    expect((await counter(t.app, "vla_batch_rows_dead_lettered_total", "inference-logs")) - deadBefore).toBe(6);
    expect(await counter(t.app, "vla_batch_rows_spilled_total", "inference-logs")).toBe(0);
    // Nothing was left in the journal to replay.
    expect(
      readdirSync(path.join(t.app.platform.config.dataDir, "journal")).filter((f) =>
        f.startsWith("inference-logs.jsonl"),
      ),
    ).toEqual([]);
  });

  it("inference-logs: text holding lone surrogates is stored with U+FFFD in their place, not dead-lettered", async () => {
    const c = await newKey(t);
    // Values the fuzz run saw dead-lettered on PGlite: lone low surrogates after other non-ASCII
    // code units made PGlite under-count the array literal's bytes (22P02 malformed array literal).
    const instruction = "\f\uda4b};co\udf78\uddb7= ";
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers: { "x-api-key": c.key },
      payload: { image: (await jpeg(64, 64, 5)).toString("base64"), instruction, robot_id: "arm-1" },
    });
    expect(res.statusCode).toBe(200);
    const pushed = logEntry(c.customerId, {
      instruction: "\udfaa\ude4f\u{146dd}",
      unnormKey: "\b\udc09d&u\udfe9\udf3f\u0019\u0003x\u001b\ud807",
      model: "é\udc00",
      robotId: "arm-\u00e9\udc00",
      status: "error",
      errorCode: "\u00e9\udc00\udc00",
    });
    const writer = inferenceLogWriters.get(t.app.platform);
    if (writer === undefined) throw new Error("no inference log writer");
    writer.push(pushed);
    await flushLogs(t.app);

    const id = res.json<{ inference_id: string }>().inference_id;
    const rows = await t.database.db
      .select()
      .from(inferenceLogs)
      .where(inArray(inferenceLogs.id, [id, pushed.id]));
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(id)?.instruction).toBe(instruction.toWellFormed());
    expect(byId.get(id)?.instruction).toBe("\f\ufffd};co\ufffd\ufffd= ");
    expect(byId.get(pushed.id)).toMatchObject({
      instruction: "\ufffd\ufffd\u{146dd}",
      unnormKey: "\b\ufffdd&u\ufffd\ufffd\u0019\u0003x\u001b\ufffd",
      model: "é\ufffd",
      robotId: "arm-é\ufffd",
      errorCode: "é\ufffd\ufffd",
    });
    const dead = deadLetters(t.app.platform.config.dataDir, "inference-logs").map((d) => d.row.id);
    expect(dead).not.toContain(id);
    expect(dead).not.toContain(pushed.id);
  });

  it("safety-incidents: a bad incident does not take the customer's other incidents with it", async () => {
    const a = await newKey(t);
    const b = await newKey(t);
    const incident = (customerId: string, robotId: string): IncidentRow => ({
      customerId,
      robotId,
      inferenceId: randomUUID(),
      violationType: "linear_velocity",
      severity: "low",
      actionTaken: "clamped",
      measured: 0.55,
      limit: 0.5,
      step: 0,
      message: "linear velocity 0.55 m/s exceeds 0.5 m/s",
      at: new Date(),
    });
    const writers = safetyWriters.get(t.app.platform);
    if (writers === undefined) throw new Error("no safety writers");
    writers.incidents.push(incident(a.customerId, "arm-good-1"));
    writers.incidents.push(incident(b.customerId, "arm\u0000bad"));
    writers.incidents.push(incident("not-a-customer-id", "arm-bad-2"));
    writers.incidents.push(incident(b.customerId, "arm-good-2"));
    await writers.incidents.flush();

    const stored = await t.database.db
      .select({ robotId: safetyIncidents.robotId })
      .from(safetyIncidents)
      .where(inArray(safetyIncidents.customerId, [a.customerId, b.customerId]));
    expect(stored.map((r) => r.robotId).sort()).toEqual(["arm-good-1", "arm-good-2"]);
    const dead = deadLetters(t.app.platform.config.dataDir, "safety-incidents");
    expect(dead.map((d) => [d.row.robotId, d.error.code])).toEqual([
      ["arm\u0000bad", "22021"],
      ["arm-bad-2", "22P02"],
    ]);
    const strays = await t.database.db.select().from(safetyIncidents).where(eq(safetyIncidents.robotId, "arm-bad-2"));
    expect(strays).toEqual([]);
  });
});

describe("a journal holding a bad row, replayed at start", () => {
  it("stores the good rows, dead-letters the bad one and leaves no journal behind", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "vla-journal-start-"));
    const journal = path.join(dataDir, "journal");
    mkdirSync(journal);
    // inference_logs has no foreign key: rows of customers this database never saw are stored too.
    const rows = [
      logEntry(randomUUID()),
      logEntry(randomUUID(), { instruction: "stream\u0000prompt" }),
      logEntry(randomUUID()),
      logEntry(randomUUID()),
    ];
    writeFileSync(path.join(journal, "inference-logs.jsonl"), `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    let t: InferenceTestContext | undefined;
    try {
      t = await buildInferenceApp({ DATA_DIR: dataDir });
      const good = rows.filter((_, i) => i !== 1).map((r) => r.id);
      expect(
        await storedLogIds(
          t,
          rows.map((r) => r.id),
        ),
      ).toEqual(good.sort());
      expect(deadLetters(dataDir, "inference-logs").map((d) => [d.row.id, d.error.code])).toEqual([
        [rows[1]?.id, "22021"],
      ]);
      expect(readdirSync(journal).filter((f) => f.startsWith("inference-logs"))).toEqual(["inference-logs.dead.jsonl"]);
      expect(await counter(t.app, "vla_batch_rows_replayed_total", "inference-logs")).toBe(3);
      expect(await counter(t.app, "vla_batch_rows_dead_lettered_total", "inference-logs")).toBe(1);
    } finally {
      await t?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("usage counters (batched, not a platform batch writer)", () => {
  it("a customer deleted while counts were pending does not hold back the other customers' counts", async () => {
    const iso = await isolatedDatabase();
    try {
      const a = await seedCustomer(iso.database);
      const gone = await seedCustomer(iso.database);
      const repo = new UsageRepo(iso.database.db);
      const recorder = new UsageRecorder(repo);
      recorder.record(a, "2026-12-01", 3);
      recorder.record(gone, "2026-12-01", 5);
      await iso.database.db.delete(customers).where(eq(customers.id, gone));
      await recorder.flush();
      expect(recorder.pendingCount).toBe(0);
      expect(await repo.monthCount(a, "2026-12-01")).toBe(3);
      expect(await repo.monthCount(gone, "2026-12-01")).toBe(0);
    } finally {
      await iso.drop();
    }
  });
});

describe("a database that is really away", () => {
  // The drivers' own errors must read as "away", not as a bad row: the rows, the NUL one too,
  // go to the journal for later, none to the dead-letter file, and the batch is not split.
  const cases: [string, () => Promise<Database>][] = [
    [
      "closed",
      async () => {
        const iso = await isolatedDatabase();
        await iso.drop();
        return iso.database;
      },
    ],
    // Loopback port 9 (discard): nothing listens there, the connection is refused.
    ["refused", () => createDatabase({ url: "postgres://postgres@127.0.0.1:9/none" })],
  ];
  for (const [name, open] of cases) {
    it(`journals every row when the connection is ${name}`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "vla-journal-away-"));
      const database = await open();
      const repo = new InferenceLogsRepo(database.db);
      const registry = new Registry();
      let writes = 0;
      const writer = new BatchWriter<InferenceLogEntry>({
        name: "inference-logs",
        journalDir: dir,
        metrics: createBatchWriterMetrics(registry),
        log: pino({ level: "silent" }),
        flushIntervalMs: 60_000,
        replayIntervalMs: 60_000,
        sink: {
          write: (rows) => {
            writes++;
            return repo.insertMany(rows);
          },
        },
      });
      try {
        await writer.start();
        const c = randomUUID();
        for (let i = 0; i < 8; i++) writer.push(logEntry(c, i === 3 ? { instruction: "a\u0000b" } : {}));
        await writer.flush();
        expect(writes).toBe(1);
        expect(readFileSync(path.join(dir, "inference-logs.jsonl"), "utf8").trim().split("\n")).toHaveLength(8);
        expect(existsSync(path.join(dir, "inference-logs.dead.jsonl"))).toBe(false);
      } finally {
        await writer.close();
        await database.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
