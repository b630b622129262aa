import { appendFile, mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { FastifyBaseLogger } from "fastify";
import { Counter, Gauge, type Registry } from "prom-client";

/**
 * Off-request-path bookkeeping (inference logs, incidents, usage, last-used stamps): rows are
 * buffered in memory and written in batches. Nothing is lost when the database is away: a
 * failed batch is spilled to a journal file under DATA_DIR and replayed when the database
 * answers again, and on the next start. Shutdown flushes everything.
 *
 * Rows must be plain JSON values (dates as ISO strings): replayed rows come back from JSON.
 */
export interface BatchSink<T> {
  /** Writes one batch; throws when the batch could not be stored (it is then journalled). */
  write(rows: readonly T[]): Promise<void>;
}

export interface BatchWriterOptions<T> {
  /** Stable name: metric label and journal file name. Letters, digits, `_` and `-`. */
  readonly name: string;
  readonly sink: BatchSink<T>;
  /** Directory of journal files (usually `<DATA_DIR>/journal`). */
  readonly journalDir: string;
  readonly flushIntervalMs?: number;
  readonly maxBatch?: number;
  /** Rows held in memory at most; beyond it the oldest go straight to the journal. */
  readonly maxBuffered?: number;
  /** How often spilled rows are retried while the sink is failing. */
  readonly replayIntervalMs?: number;
  readonly metrics: BatchWriterMetrics;
  readonly log: FastifyBaseLogger;
}

/** The knobs a module may set; name, sink, journal, metrics and logger come from the platform. */
export type BatchWriterTuning = Partial<
  Pick<BatchWriterOptions<unknown>, "flushIntervalMs" | "maxBatch" | "maxBuffered" | "replayIntervalMs">
>;

export interface BatchWriterMetrics {
  readonly written: Counter<"writer">;
  readonly buffered: Gauge<"writer">;
  readonly spilled: Counter<"writer">;
  readonly replayed: Counter<"writer">;
  readonly dropped: Counter<"writer">;
}

/** One set of metrics shared by every writer of an app, labelled by writer name. */
export function createBatchWriterMetrics(registry: Registry): BatchWriterMetrics {
  const registers = [registry];
  return {
    written: new Counter({
      name: "vla_batch_rows_written_total",
      help: "Rows stored by batch writers.",
      labelNames: ["writer"],
      registers,
    }),
    buffered: new Gauge({
      name: "vla_batch_rows_buffered",
      help: "Rows waiting in memory.",
      labelNames: ["writer"],
      registers,
    }),
    spilled: new Counter({
      name: "vla_batch_rows_spilled_total",
      help: "Rows written to the local journal because the database failed or the buffer was full.",
      labelNames: ["writer"],
      registers,
    }),
    replayed: new Counter({
      name: "vla_batch_rows_replayed_total",
      help: "Journalled rows stored after the database recovered or at start.",
      labelNames: ["writer"],
      registers,
    }),
    dropped: new Counter({
      name: "vla_batch_rows_dropped_total",
      help: "Rows lost because neither the database nor the journal could take them. Must stay 0.",
      labelNames: ["writer"],
      registers,
    }),
  };
}

export class BatchWriter<T> {
  private readonly opts: Required<Omit<BatchWriterOptions<T>, "log" | "metrics" | "sink">> & BatchWriterOptions<T>;
  private buffer: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private replayTimer: NodeJS.Timeout | undefined;
  /** Serialises flushes, spills and replays. */
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private journalPending = false;

  constructor(options: BatchWriterOptions<T>) {
    if (!/^[A-Za-z0-9_-]+$/.test(options.name)) throw new Error(`invalid batch writer name ${options.name}`);
    this.opts = {
      flushIntervalMs: 250,
      maxBatch: 500,
      maxBuffered: 50_000,
      replayIntervalMs: 5_000,
      ...options,
    };
  }

  private get journalFile(): string {
    return path.join(this.opts.journalDir, `${this.opts.name}.jsonl`);
  }

  /** Replays what an earlier process left in the journal, then starts the flush timer. */
  async start(): Promise<void> {
    await mkdir(this.opts.journalDir, { recursive: true });
    this.journalPending = true;
    await this.enqueue(() => this.replay());
    this.timer = setInterval(() => void this.flush(), this.opts.flushIntervalMs);
    this.timer.unref();
  }

  /** Never throws and never waits: the request path calls this. */
  push(row: T): void {
    if (this.closed) {
      // After close nothing flushes any more; keep the row in the journal.
      void this.enqueue(() => this.spill([row]));
      return;
    }
    this.buffer.push(row);
    if (this.buffer.length > this.opts.maxBuffered) {
      const excess = this.buffer.splice(0, this.buffer.length - this.opts.maxBuffered);
      void this.enqueue(() => this.spill(excess));
    }
    this.opts.metrics.buffered.set({ writer: this.opts.name }, this.buffer.length);
    if (this.buffer.length >= this.opts.maxBatch) void this.flush();
  }

  get bufferedCount(): number {
    return this.buffer.length;
  }

  /** Writes everything buffered now (in batches). Resolves when done or journalled. */
  flush(): Promise<void> {
    return this.enqueue(async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.opts.maxBatch);
        this.opts.metrics.buffered.set({ writer: this.opts.name }, this.buffer.length);
        try {
          await this.opts.sink.write(batch);
          this.opts.metrics.written.inc({ writer: this.opts.name }, batch.length);
        } catch (err) {
          this.opts.log.warn({ err, writer: this.opts.name, rows: batch.length }, "batch write failed; journalling");
          await this.spill(batch);
          // The rest would fail the same way: journal it too rather than hammer the database.
          const rest = this.buffer.splice(0);
          if (rest.length > 0) await this.spill(rest);
          this.opts.metrics.buffered.set({ writer: this.opts.name }, 0);
        }
      }
    });
  }

  /** Final flush; whatever cannot be written stays in the journal for the next start. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.replayTimer);
    await this.flush();
    if (this.journalPending) await this.enqueue(() => this.replay());
    this.closed = true;
    await this.chain;
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const next = this.chain.then(task, task);
    this.chain = next.catch(() => {});
    return this.chain;
  }

  /** Appends rows to the journal; `fresh` is false when rows come back from a failed replay. */
  private async spill(rows: readonly T[], fresh = true): Promise<void> {
    if (rows.length === 0) return;
    try {
      await mkdir(this.opts.journalDir, { recursive: true });
      await appendFile(this.journalFile, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
      if (fresh) this.opts.metrics.spilled.inc({ writer: this.opts.name }, rows.length);
      this.journalPending = true;
      this.scheduleReplay();
    } catch (err) {
      this.opts.metrics.dropped.inc({ writer: this.opts.name }, rows.length);
      this.opts.log.error({ err, writer: this.opts.name, rows: rows.length }, "journal write failed; rows lost");
    }
  }

  private scheduleReplay(): void {
    if (this.replayTimer !== undefined || this.closed) return;
    this.replayTimer = setTimeout(() => {
      this.replayTimer = undefined;
      void this.enqueue(() => this.replay());
    }, this.opts.replayIntervalMs);
    this.replayTimer.unref();
  }

  /**
   * Moves the journal aside (new spills start a fresh file), writes it in batches, and puts
   * back whatever still fails. Also picks up `.replaying` files a crash left behind.
   */
  private async replay(): Promise<void> {
    const dir = this.opts.journalDir;
    const base = `${this.opts.name}.jsonl`;
    let files: string[];
    try {
      files = (await readdir(dir)).filter((f) => f === base || (f.startsWith(`${base}.`) && f.endsWith(".replaying")));
    } catch {
      return;
    }
    this.journalPending = false;
    for (const f of files) {
      let work = path.join(dir, f);
      if (f === base) {
        const moved = path.join(dir, `${base}.${process.pid}.${Date.now()}.replaying`);
        await rename(work, moved);
        work = moved;
      }
      const rows = (await readFile(work, "utf8"))
        .split("\n")
        .filter((l) => l.trim() !== "")
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as T];
          } catch {
            // A torn last line from a crash mid-append: count it, it cannot be recovered.
            this.opts.metrics.dropped.inc({ writer: this.opts.name }, 1);
            return [];
          }
        });
      let i = 0;
      try {
        for (; i < rows.length; i += this.opts.maxBatch) {
          const batch = rows.slice(i, i + this.opts.maxBatch);
          await this.opts.sink.write(batch);
          this.opts.metrics.replayed.inc({ writer: this.opts.name }, batch.length);
          this.opts.metrics.written.inc({ writer: this.opts.name }, batch.length);
        }
        await unlink(work);
      } catch (err) {
        // Still failing: keep the unwritten rows for the next attempt.
        const remaining = rows.slice(i);
        await unlink(work);
        this.opts.log.warn(
          { err, writer: this.opts.name, rows: remaining.length },
          "journal replay failed; will retry",
        );
        await this.spill(remaining, false);
        return;
      }
    }
  }
}
