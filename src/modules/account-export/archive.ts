import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import type { Db } from "../../platform/db/client.ts";
import type { ExportSection, FilesSection, RowsSection } from "../../platform/exports.ts";
import { TAR_END, tarHeader, tarPadding } from "./tar.ts";

/** Bumped when the archive's layout changes; written into manifest.json. */
export const EXPORT_FORMAT_VERSION = 1;

export interface ArchiveInput {
  readonly customerId: string;
  readonly sections: readonly ExportSection[];
  /** The handle sections read from, or a function picking it once the sections are flushed. */
  readonly db: Db | (() => Promise<Db>);
  /** The archive (`.tar.gz`), created with mode 0600. */
  readonly outFile: string;
  /** Path prefix of the temporary folder where sections are staged (each file deleted once in the archive). */
  readonly stagePrefix: string;
  readonly now: () => number;
  readonly exportId?: string;
  /** Called after every `progressEvery` rows of a section and at its end, with rows written so far. */
  readonly onProgress?: (progress: Readonly<Record<string, number>>) => Promise<void> | void;
  readonly progressEvery?: number;
  /** Aborts the export between rows (shutdown); the partial archive is removed. */
  readonly signal?: AbortSignal;
}

export interface ArchiveResult {
  readonly sizeBytes: number;
  readonly progress: Record<string, number>;
}

/** Writes with backpressure: waits for `drain` when the stream's buffer is full. */
async function write(stream: Writable, chunk: Buffer | string): Promise<void> {
  if (!stream.write(chunk)) await once(stream, "drain");
}

const FLUSH_BYTES = 64 * 1024;

/** Streams a section into an NDJSON file; returns its row count. Lines are written in ~64 KB chunks. */
async function stageSection(
  section: RowsSection,
  input: ArchiveInput & { readonly db: Db },
  file: string,
  progress: Record<string, number>,
): Promise<number> {
  const out = createWriteStream(file, { mode: 0o600 });
  const closed = once(out, "close");
  let rows = 0;
  let pending = "";
  const every = input.progressEvery ?? 5_000;
  try {
    for await (const row of section.rows(input.customerId, input.db)) {
      pending += `${JSON.stringify(row)}\n`;
      rows += 1;
      if (pending.length >= FLUSH_BYTES) {
        input.signal?.throwIfAborted();
        await write(out, pending);
        pending = "";
      }
      if (rows % every === 0) {
        progress[section.name] = rows;
        await input.onProgress?.(progress);
      }
    }
    if (pending !== "") await write(out, pending);
  } finally {
    out.end();
    await closed;
  }
  progress[section.name] = rows;
  await input.onProgress?.(progress);
  return rows;
}

/** Appends one file to the tar stream, copying it from disk chunk by chunk. */
async function appendFile(tar: Writable, name: string, file: string, mtime: number): Promise<void> {
  const { size } = await stat(file);
  await write(tar, tarHeader({ name, size, mtime }));
  for await (const chunk of createReadStream(file)) await write(tar, chunk as Buffer);
  await write(tar, tarPadding(size));
}

const FILE_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * A files section: each file streamed into the tar (header, bytes chunk by chunk, padding), its
 * index line staged to `indexFile`; returns the number of files. A body whose length differs
 * from its declared size fails the export (the tar would be corrupt).
 */
async function appendFiles(
  tar: Writable,
  section: FilesSection,
  input: ArchiveInput & { readonly db: Db },
  indexFile: string,
  progress: Record<string, number>,
  mtime: number,
): Promise<number> {
  const index = createWriteStream(indexFile, { mode: 0o600 });
  const closed = once(index, "close");
  let files = 0;
  try {
    for await (const f of section.files(input.customerId, input.db)) {
      input.signal?.throwIfAborted();
      if (!FILE_NAME.test(f.name) || f.name === "." || f.name === "..") {
        f.body.destroy();
        throw new Error(`export section "${section.name}": bad file name ${JSON.stringify(f.name)}`);
      }
      const name = `${section.dir}/${f.name}`;
      await write(tar, tarHeader({ name, size: f.size, mtime }));
      let written = 0;
      for await (const chunk of f.body) {
        const b = chunk as Buffer;
        written += b.length;
        if (written > f.size) break;
        await write(tar, b);
      }
      if (written !== f.size) {
        f.body.destroy();
        throw new Error(`export section "${section.name}": ${name} is ${written} bytes, declared ${f.size}`);
      }
      await write(tar, tarPadding(f.size));
      await write(index, `${JSON.stringify({ file: name, ...f.line })}\n`);
      files += 1;
      if (files % 100 === 0) {
        progress[section.name] = files;
        await input.onProgress?.(progress);
      }
    }
  } finally {
    index.end();
    await closed;
  }
  progress[section.name] = files;
  await input.onProgress?.(progress);
  return files;
}

async function appendBuffer(tar: Writable, name: string, body: Buffer, mtime: number): Promise<void> {
  await write(tar, tarHeader({ name, size: body.length, mtime }));
  await write(tar, body);
  await write(tar, tarPadding(body.length));
}

/**
 * Writes the export archive: one NDJSON file per section, in registration order, then
 * manifest.json (format version, customer, time, files with row counts). Each section is staged
 * to disk first (a tar header needs the file's size), so memory holds one keyset page and one
 * 64 KB write buffer whatever the volume.
 */
export async function writeArchive(archiveInput: ArchiveInput): Promise<ArchiveResult> {
  for (const section of archiveInput.sections) if ("flush" in section) await section.flush?.();
  const db = typeof archiveInput.db === "function" ? await archiveInput.db() : archiveInput.db;
  const input: ArchiveInput & { readonly db: Db } = { ...archiveInput, db };
  const gzip = createGzip();
  const done = pipeline(gzip, createWriteStream(input.outFile, { mode: 0o600 }));
  // Until `done` is awaited below its rejection is observed here, so an early disk error is not unhandled.
  done.catch(() => {});
  const stage = await mkdtemp(input.stagePrefix);
  const progress: Record<string, number> = {};
  const mtime = Math.floor(input.now() / 1000);
  const files: { name: string; file: string; rows: number }[] = [];
  try {
    for (const section of input.sections) progress[section.name] = 0;
    for (const section of input.sections) {
      input.signal?.throwIfAborted();
      const staged = path.join(stage, section.file);
      const rows =
        "dir" in section
          ? await appendFiles(gzip, section, input, staged, progress, mtime)
          : await stageSection(section, input, staged, progress);
      await appendFile(gzip, section.file, staged, mtime);
      await rm(staged, { force: true });
      files.push({ name: section.name, file: section.file, rows });
    }
    const manifest = {
      format_version: EXPORT_FORMAT_VERSION,
      export_id: input.exportId ?? null,
      customer_id: input.customerId,
      generated_at: new Date(input.now()).toISOString(),
      files,
    };
    await appendBuffer(gzip, "manifest.json", Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), mtime);
    await write(gzip, TAR_END);
    gzip.end();
    await done;
  } catch (e) {
    gzip.destroy();
    await done.catch(() => {});
    await rm(input.outFile, { force: true });
    throw e;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  return { sizeBytes: (await stat(input.outFile)).size, progress };
}
