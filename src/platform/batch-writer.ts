import { appendFile, mkdir, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { type Link, type SpanContext, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import type { FastifyBaseLogger } from "fastify";
import { Counter, Gauge, type Registry } from "prom-client";

/**
 * Off-request-path bookkeeping (inference logs, incidents, usage, last-used stamps): rows are
 * buffered in memory and written in batches. Nothing is lost when the database is away: a
 * failed batch is spilled to a journal file under DATA_DIR and replayed when the database
 * answers again, and on the next start. Shutdown flushes everything.
 *
 * One bad row must not hold back the others: when a batch fails with an error a row can cause
 * (a data exception, a constraint violation, anything unrecognised) rather than with the
 * database being away, the batch is split in halves until the failing rows are alone; the good
 * rows are written and each bad row goes to a dead-letter file `<name>.dead.jsonl` beside the
 * journal, with the error. That costs O(k log n) writes for k bad rows in a batch of n. The
 * same rule applies when the journal is replayed, so a replay never sticks on a row.
 *
 * Rows must be plain JSON values (dates as ISO strings): replayed rows come back from JSON.
 */
export interface BatchSink<T> {
  /**
   * Writes one batch; throws when the batch could not be stored (it is then journalled, or split
   * to isolate a bad row). A failed call must have stored nothing (one statement, or one
   * transaction), or storing a row twice must be harmless: parts of a failed batch are written
   * again.
   */
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
  /**
   * Tracing on: each batch written is a `batch_write` span linked to the request spans whose rows
   * it holds (the links given to `push`, at most MAX_LINKS per batch).
   */
  readonly tracer?: Tracer | undefined;
}

const MAX_LINKS = 128;

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
  readonly deadLettered: Counter<"writer">;
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
    deadLettered: new Counter({
      name: "vla_batch_rows_dead_lettered_total",
      help: "Rows the database rejected on their own (bad data, constraint), moved to the writer's dead-letter file.",
      labelNames: ["writer"],
      registers,
    }),
  };
}

/**
 * Why a write failed, as far as the batch writer cares:
 * - `unavailable`: not the rows' fault (connection refused or lost, timeouts, a closed pool or
 *   PGlite, a read-only standby, a schema or permission problem): every row would fail the same
 *   way, so the rows are journalled and retried later.
 * - `row`: a data exception (SQLSTATE class 22, e.g. 22021 a NUL byte, 22P02 a malformed uuid),
 *   an integrity violation (23, e.g. a foreign key to a deleted customer) or a program limit
 *   (54, a value too large): some row of the batch is bad.
 * - `unknown`: anything else (other SQLSTATEs, plain exceptions thrown by a sink while building
 *   the statement). Treated like `row`, since a row may well be the cause and a journal must not
 *   stick on it; splitting stops as soon as a part fails as `unavailable`.
 */
export type WriteFailure = "unavailable" | "row" | "unknown";

const ROW_CLASSES = new Set(["22", "23", "54"]);
/**
 * 08 connection, 25 transaction state (25006 read-only standby), 28 authorization, 3D unknown
 * database, 40 rollback (serialization, deadlock), 42 syntax or access rule (a missing table or
 * grant: the statement, not a row), 53 resources (disk full, too many connections), 55 object
 * state (lock not available), 57 operator intervention (statement timeout, shutdown), 58 I/O,
 * XX internal.
 */
const UNAVAILABLE_CLASSES = new Set(["08", "25", "28", "3D", "40", "42", "53", "55", "57", "58", "XX"]);
const NODE_NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
]);
/** Messages of driver errors that carry no code: pg ("Connection terminated unexpectedly", "timeout exceeded when trying to connect", "Cannot use a pool after calling end on the pool"), PGlite ("PGlite is closed"). */
const UNAVAILABLE_MESSAGE =
  /connect|terminated|timed? ?out|timeout|closed|not queryable|after calling end|shutting down|socket|unavailable|ECONN/i;

/**
 * The error and its `cause` chain, outermost first (drizzle wraps driver errors in
 * DrizzleQueryError; a failed connect to several addresses is an AggregateError of them).
 */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  let e = err;
  while (e !== undefined && e !== null && chain.length < 10 && !chain.includes(e)) {
    chain.push(e);
    if (typeof e !== "object") break;
    if ("cause" in e && e.cause !== undefined) e = e.cause;
    else if (e instanceof AggregateError) e = e.errors[0];
    else break;
  }
  return chain;
}

function codeOf(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null || !("code" in e)) return undefined;
  const code = (e as { code: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/**
 * The code and message worth recording for a failure: the innermost error's (the driver's own,
 * not drizzle's wrapper, whose message carries the statement's parameters, i.e. the rows).
 */
export function describeWriteError(err: unknown): { code: string | null; message: string } {
  const chain = causeChain(err);
  const withCode = chain.find((e) => codeOf(e) !== undefined);
  const root = withCode ?? chain[chain.length - 1];
  let message = root instanceof Error ? root.message : String(root);
  // drizzle's own message goes on with the parameters: keep only its first words.
  if (message.startsWith("Failed query")) message = "Failed query";
  return { code: codeOf(root) ?? null, message: message.slice(0, 300) };
}

export function classifyWriteError(err: unknown): WriteFailure {
  const chain = causeChain(err);
  for (const e of chain) {
    const code = codeOf(e);
    if (code === undefined) continue;
    if (NODE_NETWORK_CODES.has(code)) return "unavailable";
    if (/^[0-9A-Z]{5}$/.test(code)) {
      const cls = code.slice(0, 2);
      if (ROW_CLASSES.has(cls)) return "row";
      if (UNAVAILABLE_CLASSES.has(cls)) return "unavailable";
      return "unknown";
    }
  }
  const root = chain[chain.length - 1];
  if (root instanceof Error) {
    if (root.name === "AbortError" || root.name === "TimeoutError") return "unavailable";
    if (UNAVAILABLE_MESSAGE.test(root.message)) return "unavailable";
  }
  return "unknown";
}

/** What became of a batch handed to `store`. */
interface StoreOutcome<T> {
  readonly stored: number;
  /** Rows not attempted or failed because the database is away: the caller journals them. */
  readonly unwritten: T[];
  /** The `unavailable` error, when there are unwritten rows. */
  readonly error: unknown;
}

export class BatchWriter<T> {
  private readonly opts: Required<Omit<BatchWriterOptions<T>, "log" | "metrics" | "sink" | "tracer">> &
    BatchWriterOptions<T>;
  private buffer: T[] = [];
  /** Request spans of buffered rows (tracing on only). */
  private links: Link[] = [];
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
  push(row: T, trace?: SpanContext): void {
    if (trace !== undefined && this.opts.tracer !== undefined && this.links.length < MAX_LINKS) {
      this.links.push({ context: trace });
    }
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

  /** Writes everything buffered now (in batches). Resolves when done, journalled or dead-lettered. */
  flush(): Promise<void> {
    return this.enqueue(async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.opts.maxBatch);
        this.opts.metrics.buffered.set({ writer: this.opts.name }, this.buffer.length);
        const span = this.opts.tracer?.startSpan("batch_write", {
          links: this.links.splice(0),
          attributes: { "vla.writer": this.opts.name, "vla.rows": batch.length },
        });
        const out = await this.store(batch);
        if (span !== undefined) {
          span.setAttributes({ "vla.rows_stored": out.stored, "vla.rows_unwritten": out.unwritten.length });
          if (out.unwritten.length > 0) span.setStatus({ code: SpanStatusCode.ERROR, message: "unavailable" });
          span.end();
        }
        if (out.unwritten.length > 0) {
          this.opts.log.warn(
            { writer: this.opts.name, rows: out.unwritten.length, ...describeWriteError(out.error) },
            "batch write failed; journalling",
          );
          await this.spill(out.unwritten);
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

  /**
   * Writes a batch; when it fails because of its rows (not because the database is away), splits
   * it in halves, left part first, until each failing part is a single row, which goes to the
   * dead-letter file. Stops at the first `unavailable` failure: that part and every part not yet
   * tried come back as `unwritten`, in order. Each failing part of size > 1 costs two more writes,
   * and a bad row makes at most log2(n) + 1 parts fail: O(k log n) writes for k bad rows.
   */
  private async store(batch: readonly T[]): Promise<StoreOutcome<T>> {
    let stored = 0;
    const unwritten: T[] = [];
    let halted = false;
    let error: unknown;
    const dead: { row: T; err: unknown }[] = [];
    // A stack of parts, the next to write on top.
    const parts: (readonly T[])[] = [batch];
    for (let part = parts.pop(); part !== undefined; part = parts.pop()) {
      if (halted) {
        unwritten.push(...part);
        continue;
      }
      try {
        await this.opts.sink.write(part);
        stored += part.length;
        this.opts.metrics.written.inc({ writer: this.opts.name }, part.length);
      } catch (err) {
        if (classifyWriteError(err) === "unavailable") {
          halted = true;
          error = err;
          unwritten.push(...part);
        } else if (part.length === 1) {
          dead.push({ row: part[0] as T, err });
        } else {
          const mid = Math.ceil(part.length / 2);
          parts.push(part.slice(mid), part.slice(0, mid));
        }
      }
    }
    if (dead.length > 0) await this.deadLetter(dead);
    return { stored, unwritten, error };
  }

  private get deadLetterFile(): string {
    return path.join(this.opts.journalDir, `${this.opts.name}.dead.jsonl`);
  }

  /**
   * Appends rows the database refused to the dead-letter file, one JSON line each with the error;
   * the log line says how many and why, never what the rows hold. Rows the file cannot take are
   * counted as dropped (putting them back in the journal would retry them forever).
   */
  private async deadLetter(dead: readonly { row: T; err: unknown }[]): Promise<void> {
    const at = new Date().toISOString();
    const errors = dead.map((d) => describeWriteError(d.err));
    const codes = [...new Set(errors.map((e) => e.code ?? "none"))];
    const first = errors[0];
    try {
      const lines = dead.map((d, i) => JSON.stringify({ at, writer: this.opts.name, error: errors[i], row: d.row }));
      await mkdir(this.opts.journalDir, { recursive: true });
      await appendFile(this.deadLetterFile, `${lines.join("\n")}\n`);
      this.opts.metrics.deadLettered.inc({ writer: this.opts.name }, dead.length);
      this.opts.log.error(
        { writer: this.opts.name, rows: dead.length, codes, error: first?.message, file: this.deadLetterFile },
        "rows rejected by the database; moved to the dead-letter file",
      );
    } catch (err) {
      this.opts.metrics.dropped.inc({ writer: this.opts.name }, dead.length);
      this.opts.log.error(
        { err, writer: this.opts.name, rows: dead.length, codes, error: first?.message },
        "rows rejected by the database and the dead-letter file write failed; rows lost",
      );
    }
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
      for (let i = 0; i < rows.length; i += this.opts.maxBatch) {
        const out = await this.store(rows.slice(i, i + this.opts.maxBatch));
        this.opts.metrics.replayed.inc({ writer: this.opts.name }, out.stored);
        if (out.unwritten.length > 0) {
          // Still failing: keep the unwritten rows for the next attempt.
          const remaining = [...out.unwritten, ...rows.slice(i + this.opts.maxBatch)];
          await unlink(work);
          this.opts.log.warn(
            { writer: this.opts.name, rows: remaining.length, ...describeWriteError(out.error) },
            "journal replay failed; will retry",
          );
          await this.spill(remaining, false);
          return;
        }
      }
      await unlink(work);
    }
  }
}
