import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type BatchSink,
  BatchWriter,
  type BatchWriterMetrics,
  classifyWriteError,
  createBatchWriterMetrics,
  describeWriteError,
} from "./batch-writer.ts";

interface Row {
  id: number;
}

class FlakySink implements BatchSink<Row> {
  stored: number[] = [];
  batches: number[] = [];
  failing = false;
  async write(rows: readonly Row[]): Promise<void> {
    if (this.failing) throw new Error("database unavailable");
    this.batches.push(rows.length);
    this.stored.push(...rows.map((r) => r.id));
  }
}

let dir: string;
let registry: Registry;
let metrics: BatchWriterMetrics;
const log = pino({ level: "silent" });

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "vla-journal-"));
  registry = new Registry();
  metrics = createBatchWriterMetrics(registry);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function value(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values as { value: number }[] | undefined)?.reduce((a, v) => a + v.value, 0) ?? 0;
}

function writer(sink: BatchSink<Row>, extra: Partial<ConstructorParameters<typeof BatchWriter<Row>>[0]> = {}) {
  return new BatchWriter<Row>({
    name: "test_rows",
    sink,
    journalDir: dir,
    flushIntervalMs: 10_000,
    replayIntervalMs: 60_000,
    maxBatch: 3,
    metrics,
    log,
    ...extra,
  });
}

describe("BatchWriter", () => {
  it("writes in batches of at most maxBatch, in order", async () => {
    const sink = new FlakySink();
    const w = writer(sink);
    await w.start();
    for (let i = 0; i < 7; i++) w.push({ id: i });
    await w.flush();
    expect(sink.stored).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(Math.max(...sink.batches)).toBeLessThanOrEqual(3);
    expect(await value("vla_batch_rows_written_total")).toBe(7);
    await w.close();
  });

  it("journals rows when the sink fails and replays them on recovery", async () => {
    const sink = new FlakySink();
    const w = writer(sink);
    await w.start();
    sink.failing = true;
    for (let i = 0; i < 5; i++) w.push({ id: i });
    await w.flush();
    expect(sink.stored).toEqual([]);
    expect(await value("vla_batch_rows_spilled_total")).toBe(5);
    expect(readFileSync(path.join(dir, "test_rows.jsonl"), "utf8").trim().split("\n")).toHaveLength(5);
    sink.failing = false;
    w.push({ id: 5 });
    await w.close(); // flushes the buffer and replays the journal
    expect([...sink.stored].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await value("vla_batch_rows_replayed_total")).toBe(5);
    expect(await value("vla_batch_rows_dropped_total")).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("keeps the journal across a restart and replays it at the next start", async () => {
    const sink = new FlakySink();
    sink.failing = true;
    const first = writer(sink);
    await first.start();
    first.push({ id: 1 });
    first.push({ id: 2 });
    await first.close();
    expect(sink.stored).toEqual([]);
    sink.failing = false;
    const second = writer(sink);
    await second.start();
    expect(sink.stored).toEqual([1, 2]);
    await second.close();
  });

  it("retries a failing replay later without losing or duplicating rows", async () => {
    const sink = new FlakySink();
    writeFileSync(
      path.join(dir, "test_rows.jsonl"),
      `${[1, 2, 3, 4].map((id) => JSON.stringify({ id })).join("\n")}\n`,
    );
    sink.failing = true;
    const w = writer(sink, { replayIntervalMs: 20 });
    await w.start();
    expect(sink.stored).toEqual([]);
    sink.failing = false;
    for (let i = 0; i < 100 && sink.stored.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sink.stored).toEqual([1, 2, 3, 4]);
    await w.close();
    expect(await value("vla_batch_rows_dropped_total")).toBe(0);
  });

  it("bounds memory: rows beyond maxBuffered go to the journal, not away", async () => {
    const sink = new FlakySink();
    const w = writer(sink, { maxBuffered: 4, maxBatch: 100 });
    await w.start();
    for (let i = 0; i < 10; i++) w.push({ id: i });
    expect(w.bufferedCount).toBeLessThanOrEqual(4);
    await w.close();
    expect([...sink.stored].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("counts a torn journal line as dropped and replays the rest", async () => {
    const sink = new FlakySink();
    writeFileSync(path.join(dir, "test_rows.jsonl"), '{"id":1}\n{"id":2}\n{"id":');
    const w = writer(sink);
    await w.start();
    expect(sink.stored).toEqual([1, 2]);
    expect(await value("vla_batch_rows_dropped_total")).toBe(1);
    await w.close();
  });

  it("flushes on its timer without being asked", async () => {
    const sink = new FlakySink();
    const w = writer(sink, { flushIntervalMs: 10 });
    await w.start();
    w.push({ id: 42 });
    for (let i = 0; i < 100 && sink.stored.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(sink.stored).toEqual([42]);
    await w.close();
  });
});

/** An error as the drivers raise it: a SQLSTATE `code`, wrapped like drizzle's DrizzleQueryError. */
function pgError(code: string, message: string, params = ""): Error {
  const cause = Object.assign(new Error(message), { code, name: "error" });
  return new Error(`Failed query: insert ...\nparams: ${params}`, { cause });
}

interface PoisonRow {
  id: number;
  /** How the database rejects this row, if it does. */
  poison?: "nul" | "fk" | "throw";
  secret?: string;
}

/**
 * A sink that stores a batch atomically (all rows or none, like one INSERT) and rejects a batch
 * holding a poison row; `down` makes every write fail as if the database were away.
 */
class PoisonSink implements BatchSink<PoisonRow> {
  stored: number[] = [];
  writes = 0;
  /** Writes that fail as "unavailable" before the database answers again. */
  downFor = 0;
  down = false;
  /** Every write after this many (counted from the start) fails as "unavailable". */
  downAfter = Number.POSITIVE_INFINITY;
  downError: () => Error = () =>
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
  async write(rows: readonly PoisonRow[]): Promise<void> {
    this.writes++;
    if (this.down || this.writes > this.downAfter) throw this.downError();
    if (this.downFor > 0) {
      this.downFor--;
      throw this.downError();
    }
    const bad = rows.find((r) => r.poison !== undefined);
    if (bad?.poison === "nul")
      throw pgError("22021", 'invalid byte sequence for encoding "UTF8": 0x00', rows.map((r) => r.secret).join(","));
    if (bad?.poison === "fk") throw pgError("23503", "violates foreign key constraint");
    if (bad?.poison === "throw") throw new RangeError("Invalid time value");
    this.stored.push(...rows.map((r) => r.id));
  }
}

function poisonWriter(
  sink: BatchSink<PoisonRow>,
  extra: Partial<ConstructorParameters<typeof BatchWriter<PoisonRow>>[0]> = {},
) {
  return new BatchWriter<PoisonRow>({
    name: "test_rows",
    sink,
    journalDir: dir,
    flushIntervalMs: 60_000,
    replayIntervalMs: 60_000,
    maxBatch: 500,
    metrics,
    log,
    ...extra,
  });
}

function deadLetters(): {
  at: string;
  writer: string;
  error: { code: string | null; message: string };
  row: PoisonRow;
}[] {
  const f = path.join(dir, "test_rows.dead.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
}

describe("classifyWriteError", () => {
  it("tells a bad row from a database that is away", () => {
    // Row-level: data exceptions, integrity violations, program limits (also under drizzle's wrapper).
    expect(classifyWriteError(pgError("22021", "invalid byte sequence"))).toBe("row");
    expect(classifyWriteError(pgError("22P02", "invalid input syntax for type uuid"))).toBe("row");
    expect(classifyWriteError(pgError("23503", "foreign key"))).toBe("row");
    expect(classifyWriteError(pgError("23505", "duplicate key"))).toBe("row");
    expect(classifyWriteError(pgError("54000", "index row size exceeds maximum"))).toBe("row");
    // The database is away or the statement itself is wrong: every row would fail alike.
    for (const code of ["08006", "57P01", "57014", "53300", "40001", "25006", "42P01", "28P01", "3D000", "XX000"])
      expect(classifyWriteError(pgError(code, "x")), code).toBe("unavailable");
    const refused = Object.assign(new AggregateError([], ""), { code: "ECONNREFUSED" });
    expect(classifyWriteError(new Error("Failed query", { cause: refused }))).toBe("unavailable");
    expect(classifyWriteError(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }))).toBe("unavailable");
    const refusedEach = new AggregateError([Object.assign(new Error(""), { code: "ECONNREFUSED" })], "");
    expect(classifyWriteError(new Error("Failed query", { cause: refusedEach }))).toBe("unavailable");
    for (const message of [
      "Connection terminated unexpectedly",
      "timeout exceeded when trying to connect",
      "Cannot use a pool after calling end on the pool",
      "PGlite is closed",
      "Query read timeout",
    ])
      expect(classifyWriteError(new Error("Failed query: x", { cause: new Error(message) })), message).toBe(
        "unavailable",
      );
    // Neither: split anyway (a journal must not stick on a row the sink cannot build).
    expect(classifyWriteError(new RangeError("Invalid time value"))).toBe("unknown");
    expect(classifyWriteError(pgError("P0001", "raised by a trigger"))).toBe("unknown");
    // The wrapper's message holds the parameters (the rows): never matched, never reported.
    expect(
      classifyWriteError(new Error("Failed query\nparams: connection closed", { cause: new TypeError("x") })),
    ).toBe("unknown");
    expect(describeWriteError(new Error("Failed query: insert\nparams: secret instruction"))).toEqual({
      code: null,
      message: "Failed query",
    });
    expect(describeWriteError(pgError("22021", "invalid byte sequence", "secret instruction"))).toEqual({
      code: "22021",
      message: "invalid byte sequence",
    });
  });
});

describe("BatchWriter with a bad row", () => {
  it("writes every good row of the batch and moves the bad one to the dead-letter file", async () => {
    const sink = new PoisonSink();
    const w = poisonWriter(sink);
    await w.start();
    for (let i = 0; i < 10; i++) w.push(i === 6 ? { id: i, poison: "nul" } : { id: i });
    await w.flush();
    expect([...sink.stored].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 7, 8, 9]);
    const dead = deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      writer: "test_rows",
      error: { code: "22021", message: 'invalid byte sequence for encoding "UTF8": 0x00' },
      row: { id: 6, poison: "nul" },
    });
    expect(Number.isNaN(Date.parse(dead[0]?.at ?? ""))).toBe(false);
    expect(await value("vla_batch_rows_written_total")).toBe(9);
    expect(await value("vla_batch_rows_dead_lettered_total")).toBe(1);
    expect(await value("vla_batch_rows_spilled_total")).toBe(0);
    expect(existsSync(path.join(dir, "test_rows.jsonl"))).toBe(false);
    // Later rows are not held back either.
    w.push({ id: 10 });
    await w.close();
    expect(sink.stored).toContain(10);
  });

  it("isolates k bad rows of n in O(k log n) writes", async () => {
    const sink = new PoisonSink();
    const w = poisonWriter(sink, { maxBatch: 1024 });
    await w.start();
    const bad = new Set([3, 500, 1000]);
    for (let i = 0; i < 1024; i++) w.push(bad.has(i) ? { id: i, poison: "fk" } : { id: i });
    await w.flush();
    expect(sink.stored).toHaveLength(1021);
    expect(deadLetters().map((d) => d.row.id)).toEqual([3, 500, 1000]);
    // One write, then two per failing part; each bad row fails at most log2(1024) + 1 = 11 parts.
    expect(sink.writes).toBeLessThanOrEqual(1 + 2 * 3 * 10);
    await w.close();
  });

  it("dead-letters a row the sink throws on without a SQLSTATE", async () => {
    const sink = new PoisonSink();
    const w = poisonWriter(sink);
    await w.start();
    w.push({ id: 1 });
    w.push({ id: 2, poison: "throw" });
    await w.close();
    expect(sink.stored).toEqual([1]);
    expect(deadLetters()[0]?.error).toEqual({ code: null, message: "Invalid time value" });
  });

  it("replays a journal holding a bad row: the good rows land, the bad row is dead-lettered, the journal is gone", async () => {
    writeFileSync(
      path.join(dir, "test_rows.jsonl"),
      `${[{ id: 1 }, { id: 2, poison: "nul" }, { id: 3 }, { id: 4, poison: "fk" }, { id: 5 }]
        .map((r) => JSON.stringify(r))
        .join("\n")}\n`,
    );
    const sink = new PoisonSink();
    const w = poisonWriter(sink, { maxBatch: 2 });
    await w.start();
    expect(sink.stored).toEqual([1, 3, 5]);
    expect(deadLetters().map((d) => [d.row.id, d.error.code])).toEqual([
      [2, "22021"],
      [4, "23503"],
    ]);
    expect(readdirSync(dir)).toEqual(["test_rows.dead.jsonl"]);
    expect(await value("vla_batch_rows_replayed_total")).toBe(3);
    expect(await value("vla_batch_rows_dead_lettered_total")).toBe(2);
    await w.close();
  });

  it("journals instead of splitting when the database is away, and stops splitting when it goes away mid-way", async () => {
    const sink = new PoisonSink();
    const w = poisonWriter(sink);
    await w.start();
    sink.down = true;
    for (let i = 0; i < 8; i++) w.push({ id: i, ...(i === 5 ? { poison: "nul" as const } : {}) });
    await w.flush();
    expect(sink.writes).toBe(1);
    expect(await value("vla_batch_rows_spilled_total")).toBe(8);
    // The database answers the first (failing) write, then goes away: no row is dead-lettered for it.
    sink.down = false;
    for (let i = 8; i < 16; i++) w.push({ id: i, ...(i === 13 ? { poison: "nul" as const } : {}) });
    const before = sink.writes;
    sink.downAfter = before + 1;
    await w.flush();
    expect(sink.writes - before).toBe(2);
    expect(deadLetters()).toEqual([]);
    expect(sink.stored).toEqual([]);
    expect(await value("vla_batch_rows_spilled_total")).toBe(16);
    // Back: the replay isolates both bad rows.
    sink.downAfter = Number.POSITIVE_INFINITY;
    await w.close();
    expect([...sink.stored].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15]);
    expect(deadLetters().map((d) => d.row.id)).toEqual([5, 13]);
    expect(readdirSync(dir)).toEqual(["test_rows.dead.jsonl"]);
  });

  it("journals a batch the statement itself cannot write (missing table) without splitting it", async () => {
    const sink = new PoisonSink();
    sink.down = true;
    sink.downError = () => pgError("42P01", 'relation "inference_logs" does not exist');
    const w = poisonWriter(sink);
    await w.start();
    for (let i = 0; i < 50; i++) w.push({ id: i });
    await w.flush();
    expect(sink.writes).toBe(1);
    expect(deadLetters()).toEqual([]);
    expect(await value("vla_batch_rows_spilled_total")).toBe(50);
  });

  it("counts rows as dropped when the dead-letter file cannot be written", async () => {
    mkdirSync(path.join(dir, "test_rows.dead.jsonl"));
    const sink = new PoisonSink();
    const w = poisonWriter(sink);
    await w.start();
    w.push({ id: 1, poison: "nul" });
    w.push({ id: 2 });
    await w.close();
    expect(sink.stored).toEqual([2]);
    expect(await value("vla_batch_rows_dropped_total")).toBe(1);
    expect(await value("vla_batch_rows_dead_lettered_total")).toBe(0);
  });

  it("logs the count and the error, never the rows", async () => {
    const lines: string[] = [];
    const capture = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
    const sink = new PoisonSink();
    const w = poisonWriter(sink, { log: capture });
    await w.start();
    w.push({ id: 1, secret: "pick up the red cup" });
    w.push({ id: 2, secret: "open drawer 7", poison: "nul" });
    await w.flush();
    sink.down = true;
    sink.downError = () =>
      new Error("Failed query\nparams: open drawer 8", { cause: new Error("Connection terminated") });
    w.push({ id: 3, secret: "open drawer 8" });
    await w.close();
    const out = lines.join("");
    expect(out).toContain("dead-letter");
    expect(out).toContain("22021");
    expect(out).toContain("Connection terminated");
    expect(out).not.toMatch(/red cup|drawer/);
  });
});

describe("BatchWriter property", () => {
  it("lands every good row exactly once, dead-letters every bad row, drains the journal", async () => {
    const poisonKind = fc.constantFrom<"nul" | "fk" | "throw">("nul", "fk", "throw");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.option(poisonKind, { freq: 4, nil: undefined }), { minLength: 0, maxLength: 60 }),
        fc.integer({ min: 1, max: 16 }),
        // Per step: how many rows to push, and how many writes fail as "database away" after it.
        fc.array(fc.tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 4 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.boolean(),
        async (kinds, maxBatch, steps, restart) => {
          const runDir = mkdtempSync(path.join(tmpdir(), "vla-journal-prop-"));
          const reg = new Registry();
          const m = createBatchWriterMetrics(reg);
          const sum = async (name: string) => {
            const x = (await reg.getMetricsAsJSON()).find((v) => v.name === name);
            return (x?.values as { value: number }[] | undefined)?.reduce((a, v) => a + v.value, 0) ?? 0;
          };
          try {
            const rows: PoisonRow[] = kinds.map((poison, id) => (poison === undefined ? { id } : { id, poison }));
            const sink = new PoisonSink();
            const make = () =>
              new BatchWriter<PoisonRow>({
                name: "test_rows",
                sink,
                journalDir: runDir,
                flushIntervalMs: 60_000,
                replayIntervalMs: 60_000,
                maxBatch,
                metrics: m,
                log,
              });
            let w = make();
            await w.start();
            let next = 0;
            for (const [count, down] of steps) {
              for (const r of rows.slice(next, next + count)) w.push(r);
              next += count;
              sink.downFor = down;
              await w.flush();
            }
            for (const r of rows.slice(next)) w.push(r);
            sink.downFor = 0;
            if (restart) {
              sink.down = true;
              await w.close();
              sink.down = false;
              w = make();
              await w.start();
            }
            await w.close();

            const good = rows.filter((r) => r.poison === undefined).map((r) => r.id);
            const bad = rows.filter((r) => r.poison !== undefined).map((r) => r.id);
            expect([...sink.stored].sort((a, b) => a - b)).toEqual(good);
            const deadFile = path.join(runDir, "test_rows.dead.jsonl");
            const dead = existsSync(deadFile)
              ? readFileSync(deadFile, "utf8")
                  .trim()
                  .split("\n")
                  .map((l) => (JSON.parse(l) as { row: PoisonRow }).row.id)
              : [];
            expect(dead.sort((a, b) => a - b)).toEqual(bad);
            expect(readdirSync(runDir)).toEqual(bad.length > 0 ? ["test_rows.dead.jsonl"] : []);
            expect(await sum("vla_batch_rows_written_total")).toBe(good.length);
            expect(await sum("vla_batch_rows_dead_lettered_total")).toBe(bad.length);
            expect(await sum("vla_batch_rows_dropped_total")).toBe(0);
            const spilled = await sum("vla_batch_rows_spilled_total");
            const replayed = await sum("vla_batch_rows_replayed_total");
            expect(replayed).toBeLessThanOrEqual(spilled);
            expect(spilled - replayed).toBeLessThanOrEqual(bad.length);
          } finally {
            rmSync(runDir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
