import type { Readable } from "node:stream";
import { and, asc, eq, gt } from "drizzle-orm";
import type { AnyPgColumn, PgTable } from "drizzle-orm/pg-core";
import type { Db } from "./db/client.ts";

/**
 * GDPR access and portability (Art. 15 and 20): every feature that stores customer data
 * contributes a section of the account export here, as it contributes a hook to the deletion
 * registry (deletion.ts). Plug in from your module's plugin:
 *
 *     platform.exports.register({
 *       name: "feedback",
 *       file: "feedback.ndjson",
 *       async *rows(customerId, db) {
 *         for (const row of await new FeedbackRepo(db).allOf(customerId)) yield view(row);
 *       },
 *     });
 *
 * Each yielded object becomes one line of `file` in the archive (NDJSON). Yield plain JSON
 * (snake_case fields, ISO dates) and never a secret: no password or key hashes, no tokens, no
 * Stripe secrets. A section that can grow without bound (inference logs) must page through its
 * table with a keyset cursor (`keysetPages` below), never load it whole: the export's memory
 * stays flat whatever the customer's volume. A section that cannot reach an outside system
 * (Stripe) yields an `{ "error": ... }` line instead of throwing; a thrown error fails the export.
 */
export interface RowsSection {
  /** Unique, shown in the job's progress (`rows written per section`). */
  readonly name: string;
  /** The file inside the archive: `[a-z0-9_]+\.ndjson`. */
  readonly file: string;
  rows(customerId: string, db: Db): AsyncIterable<object>;
  /**
   * Writes rows still buffered (a batch writer) so they belong in the export. Run for every
   * section before the export picks the handle it reads from (the read replica once it has
   * replayed them).
   */
  flush?(): Promise<void>;
}

/** One stored file of a files section: streamed into the archive, never held whole in memory. */
export interface ExportFile {
  /** Its name inside the section's folder: `[A-Za-z0-9._-]+`. */
  readonly name: string;
  /** Exact byte count of `body` (a tar header precedes the bytes). */
  readonly size: number;
  readonly body: Readable;
  /** Its line in the section's NDJSON index (the archive adds `file`, the path in the archive). */
  readonly line: object;
}

/**
 * A section of binary files (stored images): each goes into the archive under `<dir>/`, and
 * `file` (NDJSON) lists them, one line each, written after them.
 */
export interface FilesSection {
  readonly name: string;
  readonly file: string;
  /** The folder inside the archive: `[a-z0-9_]+`. */
  readonly dir: string;
  files(customerId: string, db: Db): AsyncIterable<ExportFile>;
}

export type ExportSection = RowsSection | FilesSection;

const FILE = /^[a-z0-9_]+\.ndjson$/;
const DIR = /^[a-z0-9_]+$/;

export class ExportRegistry {
  private readonly list: ExportSection[] = [];

  register(section: ExportSection): void {
    if (!FILE.test(section.file)) throw new Error(`export section "${section.name}": file must match ${FILE}`);
    if ("dir" in section && !DIR.test(section.dir)) {
      throw new Error(`export section "${section.name}": dir must match ${DIR}`);
    }
    if (this.list.some((s) => s.name === section.name || s.file === section.file)) {
      throw new Error(`export section "${section.name}" (${section.file}) registered twice`);
    }
    this.list.push(section);
  }

  /** In registration order (the order of the archive). */
  get sections(): readonly ExportSection[] {
    return this.list;
  }
}

/**
 * Pages through a table with a keyset cursor: `page(after, limit)` returns up to `limit` rows
 * strictly after the cursor (undefined: from the start), in a stable total order; `cursorOf`
 * gives a row's cursor. Only one page is in memory at a time.
 */
export async function* keysetPages<Row, Cursor>(
  page: (after: Cursor | undefined, limit: number) => Promise<readonly Row[]>,
  cursorOf: (row: Row) => Cursor,
  limit: number,
): AsyncGenerator<Row> {
  let after: Cursor | undefined;
  for (;;) {
    const rows = await page(after, limit);
    for (const row of rows) yield row;
    if (rows.length < limit) return;
    after = cursorOf(rows[rows.length - 1] as Row);
  }
}

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * A database row as an export line: snake_case keys, dates as ISO strings, `omit` fields
 * (camelCase, as drizzle names them) left out. List secrets in `omit`, never rely on a reader to skip them.
 */
export function exportRow(
  row: Readonly<Record<string, unknown>>,
  omit: readonly string[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (omit.includes(k)) continue;
    out[snake(k)] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

export interface TableSectionOptions {
  readonly name: string;
  readonly file: string;
  readonly table: PgTable;
  /** The table's customer column. */
  readonly customer: AnyPgColumn;
  /** A column unique within the customer (the keyset: rows come in its order). */
  readonly key: AnyPgColumn;
  /** Fields never exported (drizzle's camelCase names). */
  readonly omit?: readonly string[];
  readonly batchRows: number;
}

/** A section holding every row of one table for the customer, paged by a unique key column. */
export function tableSection(o: TableSectionOptions): RowsSection {
  return {
    name: o.name,
    file: o.file,
    rows(customerId, db) {
      const keyName = Object.entries(o.table).find(([, c]) => c === o.key)?.[0];
      if (keyName === undefined) throw new Error(`export section "${o.name}": key is not a column of its table`);
      const page = async (after: unknown, limit: number) =>
        (await db
          .select()
          .from(o.table)
          .where(and(eq(o.customer, customerId), after === undefined ? undefined : gt(o.key, after)))
          .orderBy(asc(o.key))
          .limit(limit)) as Record<string, unknown>[];
      return (async function* () {
        for await (const row of keysetPages(page, (r) => r[keyName], o.batchRows)) yield exportRow(row, o.omit);
      })();
    },
  };
}
