import { mkdir, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "../../platform/db/client.ts";
import type { AccountExportRow } from "../../platform/db/schema/index.ts";
import type { ExportRegistry } from "../../platform/exports.ts";
import { writeArchive } from "./archive.ts";
import type { ExportRepo } from "./export.repo.ts";

export interface ExportServiceDeps {
  readonly repo: ExportRepo;
  readonly db: Db;
  /** The handle the sections read from (the read replica once caught up); default `db`. */
  readonly readDb?: () => Promise<Db>;
  readonly registry: ExportRegistry;
  /** DATA_DIR/exports. */
  readonly dir: string;
  readonly now: () => number;
  readonly ttlMs: number;
  /** Rows between progress writes (the keyset page size). */
  readonly progressEvery: number;
  /** Only instance (embedded database, LIMITS_INSTANCE_COUNT 1): every running job at startup is dead. */
  readonly singleInstance: boolean;
  readonly log: FastifyBaseLogger;
  readonly onFinished?: (status: "done" | "failed") => void;
}

/** A running job's heartbeat older than this belongs to a dead process (several instances). */
export const STALE_AFTER_MS = 10 * 60_000;
/** Failed and expired job rows are kept this long as a record, then deleted. */
const KEEP_FINISHED_MS = 30 * 86_400_000;
const INTERRUPTED = "interrupted: the server stopped before the export finished; request a new export";

export type RequestResult =
  | { readonly ok: true; readonly job: AccountExportRow }
  | { readonly ok: false; readonly active: AccountExportRow | undefined };

/**
 * Account exports as background jobs in this process: a request inserts a queued row and
 * returns; jobs run one at a time (a customer has at most one queued or running, by a unique
 * index); the archive is written under DATA_DIR/exports as `<id>.tar.gz` (0600), kept until
 * `expires_at`, then deleted by `cleanup()`.
 */
export class ExportService {
  private readonly queue: string[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly abort = new AbortController();

  private readonly deps: ExportServiceDeps;

  constructor(deps: ExportServiceDeps) {
    this.deps = deps;
  }

  archivePath(id: string): string {
    return path.join(this.deps.dir, `${id}.tar.gz`);
  }

  async request(input: { customerId: string; userId: string | null; apiKeyId: string | null }): Promise<RequestResult> {
    const job = await this.deps.repo.insertQueued({ ...input, at: new Date(this.deps.now()) });
    if (job === undefined) return { ok: false, active: await this.deps.repo.findActive(input.customerId) };
    this.enqueue(job.id);
    return { ok: true, job };
  }

  get(customerId: string, id: string): Promise<AccountExportRow | undefined> {
    return this.deps.repo.get(customerId, id);
  }

  markDownloaded(id: string): Promise<void> {
    return this.deps.repo.markDownloaded(id, new Date(this.deps.now()));
  }

  /** Resolves when the queue is empty (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    this.abort.abort();
    await this.idle();
  }

  private enqueue(id: string): void {
    this.queue.push(id);
    if (this.running === undefined) {
      this.running = this.drain().finally(() => {
        this.running = undefined;
      });
    }
  }

  private async drain(): Promise<void> {
    for (let id = this.queue.shift(); id !== undefined && !this.stopped; id = this.queue.shift()) {
      try {
        await this.run(id);
      } catch (e) {
        this.deps.log.error({ err: e, export_id: id }, "account export job crashed");
      }
    }
  }

  private async run(id: string): Promise<void> {
    const { repo, now } = this.deps;
    if (!(await repo.start(id, new Date(now())))) return;
    const job = await repo.byId(id);
    if (job === undefined) return;
    const final = this.archivePath(id);
    const part = `${final}.part`;
    try {
      await mkdir(this.deps.dir, { recursive: true, mode: 0o700 });
      const result = await writeArchive({
        customerId: job.customerId,
        sections: this.deps.registry.sections,
        db: this.deps.readDb ?? this.deps.db,
        outFile: part,
        stagePrefix: path.join(this.deps.dir, `${id}.stage-`),
        now,
        exportId: id,
        progressEvery: this.deps.progressEvery,
        signal: this.abort.signal,
        onProgress: (progress) => repo.heartbeat(id, { ...progress }, new Date(now())),
      });
      await rename(part, final);
      const at = now();
      const finished = await repo.finish(id, {
        filePath: path.basename(final),
        sizeBytes: result.sizeBytes,
        progress: result.progress,
        at: new Date(at),
        expiresAt: new Date(at + this.deps.ttlMs),
      });
      if (!finished) {
        // Failed meanwhile (a cleanup took it for dead): its archive must not outlive the row.
        await rm(final, { force: true });
        return;
      }
      this.deps.log.info({ export_id: id, size_bytes: result.sizeBytes, rows: result.progress }, "account export done");
      this.deps.onFinished?.("done");
    } catch (e) {
      await rm(part, { force: true });
      const interrupted = this.abort.signal.aborted;
      if (!interrupted) this.deps.log.error({ err: e, export_id: id }, "account export failed");
      const reason = interrupted ? INTERRUPTED : "the export could not be written; request a new export";
      await repo.fail(id, reason, new Date(now()));
      this.deps.onFinished?.("failed");
    }
  }

  /**
   * At startup: jobs the previous process left queued or running are failed (their in-memory
   * queue is gone), then the cleanup runs.
   */
  async recover(): Promise<void> {
    const at = now(this.deps);
    const staleBefore = this.deps.singleInstance ? undefined : new Date(at - STALE_AFTER_MS);
    const n = await this.deps.repo.failInterrupted(INTERRUPTED, new Date(at), staleBefore);
    if (n > 0) this.deps.log.warn({ jobs: n }, "account exports interrupted by a restart marked failed");
    await this.cleanup();
  }

  /**
   * Deletes expired archives (status -> expired), fails running jobs whose heartbeat stopped,
   * removes files under DATA_DIR/exports that no job owns, and drops old finished rows.
   */
  async cleanup(): Promise<{ expired: number; orphans: number }> {
    const { repo } = this.deps;
    const at = now(this.deps);
    let expired = 0;
    for (const job of await repo.expired(new Date(at))) {
      if (job.filePath !== null) await rm(path.join(this.deps.dir, job.filePath), { force: true });
      await repo.markExpired(job.id);
      expired += 1;
    }
    if (!this.deps.singleInstance) {
      await repo.failInterrupted(INTERRUPTED, new Date(at), new Date(at - STALE_AFTER_MS));
    }
    let orphans = 0;
    let entries: string[] = [];
    try {
      entries = await readdir(this.deps.dir);
    } catch {
      entries = [];
    }
    if (entries.length > 0) {
      const live = await repo.liveIds();
      for (const name of entries) {
        const id = name.slice(0, 36);
        if (live.has(id) || this.queue.includes(id)) continue;
        await rm(path.join(this.deps.dir, name), { recursive: true, force: true });
        orphans += 1;
      }
    }
    await repo.purgeFinished(new Date(at - KEEP_FINISHED_MS));
    if (expired > 0 || orphans > 0) this.deps.log.info({ expired, orphans }, "account export cleanup");
    return { expired, orphans };
  }
}

function now(deps: ExportServiceDeps): number {
  return deps.now();
}
