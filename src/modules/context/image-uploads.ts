import type { FastifyBaseLogger } from "fastify";
import { Counter, Gauge, type Registry } from "prom-client";
import sharp from "sharp";
import type { ObjectStore } from "../../platform/object-store.ts";

/** The image as the request carried it: an encoded file, or uint8 HxWx3 pixels (stored as PNG). */
export type UploadBody =
  | { readonly kind: "encoded"; readonly bytes: Uint8Array; readonly format: "jpeg" | "png" | "webp" }
  | { readonly kind: "pixels"; readonly data: Uint8Array; readonly width: number; readonly height: number };

export interface UploadJob {
  readonly customerId: string;
  readonly sha256: string;
  readonly body: UploadBody;
  /** Called once: the key when the object is stored, null when the upload failed or was dropped. */
  readonly done: (key: string | null) => void;
}

const EXT = { jpeg: "jpg", png: "png", webp: "webp" } as const;
const TYPE = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp" } as const;

/** `images/<customer_id>/<sha256>.<ext>`: content-addressed per customer, so the same image twice is one object. */
export function imageKey(customerId: string, sha256: string, body: UploadBody): string {
  const ext = body.kind === "encoded" ? EXT[body.format] : "png";
  return `images/${customerId}/${sha256}.${ext}`;
}

/** The prefix of every object of a customer. */
export const customerImagePrefix = (customerId: string) => `images/${customerId}/`;

export interface UploadMetrics {
  readonly uploads: Counter<"outcome">;
  readonly retries: Counter;
  readonly depth: Gauge;
}

export function createUploadMetrics(registry: Registry): UploadMetrics {
  return {
    uploads: new Counter({
      name: "vla_image_uploads_total",
      help: "Camera images handed to the object store, by outcome: uploaded (stored, or already there), failed (every attempt failed), dropped (the queue was full).",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    retries: new Counter({
      name: "vla_image_upload_retries_total",
      help: "Image upload attempts that failed and were retried after a backoff.",
      registers: [registry],
    }),
    depth: new Gauge({
      name: "vla_image_upload_queue_depth",
      help: "Image uploads waiting or in progress (retries included).",
      registers: [registry],
    }),
  };
}

export interface UploadQueueOptions {
  readonly store: ObjectStore;
  /** Jobs held at most (waiting, in flight and backing off); beyond it new ones are dropped. */
  readonly maxQueued: number;
  /** Attempts per job, the first included. */
  readonly attempts: number;
  /** Delay before the first retry; doubled per attempt (capped at 64x). */
  readonly retryMs: number;
  /** Uploads in flight at once. */
  readonly concurrency?: number;
  readonly metrics?: UploadMetrics;
  readonly log?: FastifyBaseLogger;
}

/**
 * Stores camera images off the request path. `enqueue` never waits and never throws: a full
 * queue drops the job (counted, its row keeps no image key); a failed put is retried with
 * exponential backoff, and after the last attempt the job fails (counted, logged without the
 * image). An object already in the store (same customer, same hash) is not written again.
 */
export class ImageUploadQueue {
  private readonly o: UploadQueueOptions;
  private readonly waiting: { job: UploadJob; attempt: number }[] = [];
  private held = 0;
  private active = 0;
  private closing = false;
  /** Jobs backing off: their timer and what it runs. */
  private readonly retrying = new Map<NodeJS.Timeout, () => void>();
  private idle: (() => void)[] = [];
  /** Jobs held per customer, and who waits for a customer's to settle. */
  private readonly perCustomer = new Map<string, number>();
  private readonly customerWaiters = new Map<string, (() => void)[]>();

  constructor(o: UploadQueueOptions) {
    this.o = o;
  }

  /** Jobs held: waiting, in flight, or waiting to retry. */
  get depth(): number {
    return this.held;
  }

  /** False when the job was dropped (queue full or closed); its `done(null)` has then been called. */
  enqueue(job: UploadJob): boolean {
    if (this.closing || this.held >= this.o.maxQueued) {
      this.o.metrics?.uploads.inc({ outcome: "dropped" });
      job.done(null);
      return false;
    }
    this.held++;
    this.perCustomer.set(job.customerId, (this.perCustomer.get(job.customerId) ?? 0) + 1);
    this.o.metrics?.depth.set(this.held);
    this.waiting.push({ job, attempt: 1 });
    this.pump();
    return true;
  }

  /** Resolves when no job is held (tests; shutdown after `close`). */
  drained(): Promise<void> {
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /**
   * Resolves when none of this customer's uploads is held (export, erasure): unlike `drained`, other
   * customers' traffic does not hold it up.
   */
  settled(customerId: string): Promise<void> {
    if ((this.perCustomer.get(customerId) ?? 0) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.customerWaiters.get(customerId) ?? [];
      list.push(resolve);
      this.customerWaiters.set(customerId, list);
    });
  }

  /**
   * Shutdown: no new jobs; jobs waiting for a retry get their next attempt now, without backoff,
   * and no further one. Resolves when every job is settled.
   */
  async close(): Promise<void> {
    this.closing = true;
    for (const [timer, retry] of [...this.retrying]) {
      clearTimeout(timer);
      retry();
    }
    await this.drained();
  }

  private pump(): void {
    const limit = this.o.concurrency ?? 4;
    while (this.active < limit && this.waiting.length > 0) {
      const next = this.waiting.shift() as { job: UploadJob; attempt: number };
      this.active++;
      void this.attempt(next.job, next.attempt);
    }
  }

  private async attempt(job: UploadJob, attempt: number): Promise<void> {
    const key = imageKey(job.customerId, job.sha256, job.body);
    try {
      if (!(await this.o.store.exists(key))) {
        const { bytes, type } = await encode(job.body);
        await this.o.store.put(key, bytes, type);
      }
      this.o.metrics?.uploads.inc({ outcome: "uploaded" });
      this.settle(job, key);
    } catch (err) {
      if (attempt < this.o.attempts && !this.closing) {
        this.o.metrics?.retries.inc();
        const delay = this.o.retryMs * 2 ** Math.min(attempt - 1, 6);
        const retry = () => {
          this.retrying.delete(timer);
          this.waiting.push({ job, attempt: attempt + 1 });
          this.pump();
        };
        const timer = setTimeout(retry, delay);
        timer.unref();
        this.retrying.set(timer, retry);
      } else {
        this.o.metrics?.uploads.inc({ outcome: "failed" });
        this.o.log?.warn(
          { err, customerId: job.customerId, attempts: attempt, store: this.o.store.kind },
          "image upload failed; the inference keeps no image",
        );
        this.settle(job, null);
      }
    } finally {
      this.active--;
      this.pump();
    }
  }

  private settle(job: UploadJob, key: string | null): void {
    try {
      job.done(key);
    } finally {
      this.held--;
      const left = (this.perCustomer.get(job.customerId) ?? 1) - 1;
      if (left > 0) this.perCustomer.set(job.customerId, left);
      else {
        this.perCustomer.delete(job.customerId);
        const waiters = this.customerWaiters.get(job.customerId) ?? [];
        this.customerWaiters.delete(job.customerId);
        for (const w of waiters) w();
      }
      this.o.metrics?.depth.set(this.held);
      if (this.held === 0) {
        const waiters = this.idle;
        this.idle = [];
        for (const w of waiters) w();
      }
    }
  }
}

/** Encoded files are stored as received; pixel arrays as lossless PNG (encoded here, off the request path). */
async function encode(body: UploadBody): Promise<{ bytes: Uint8Array; type: string }> {
  if (body.kind === "encoded") return { bytes: body.bytes, type: TYPE[body.format] };
  const png = await sharp(body.data, { raw: { width: body.width, height: body.height, channels: 3 } })
    .png()
    .toBuffer();
  return { bytes: png, type: "image/png" };
}
