import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type BatchSink, BatchWriter, type BatchWriterMetrics, createBatchWriterMetrics } from "./batch-writer.ts";

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
