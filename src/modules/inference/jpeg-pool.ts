import { Worker } from "node:worker_threads";
import { decodeJpegFast } from "./jpeg-fast.ts";

/**
 * Small-JPEG decoding off the event loop: `threads` worker threads each running the fast
 * decoder (`jpeg-fast.ts`). The event loop pays one 6-30 KB copy and two messages per frame
 * (about 0.03 ms) instead of the decode (0.35-0.7 ms) and its garbage (about 350 KB of pixel
 * buffers per frame, which the worker's own heap collects).
 *
 * With `threads` = 0 the fast decoder runs on the calling thread. Whatever the pool cannot do
 * (not ready yet, a worker died, too many frames queued) answers `undefined`, which sends the
 * image to sharp: the pool never fails a request, it can only make it slower.
 */
export interface JpegDecoder {
  /** RGB pixels, or undefined: decode with sharp instead. */
  decode(bytes: Uint8Array, width: number, height: number): Promise<Uint8Array | undefined> | Uint8Array | undefined;
  close(): Promise<void>;
}

/** Frames queued per thread beyond which new frames go to sharp (the libuv pool) instead. */
const MAX_QUEUED_PER_THREAD = 64;
/** Respawns of a crashed worker before the slot is given up (sharp serves). */
const MAX_RESPAWNS = 5;

interface Slot {
  worker: Worker | undefined;
  ready: boolean;
  inFlight: number;
  respawns: number;
}

export class JpegDecodePool implements JpegDecoder {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, { slot: Slot; resolve: (d: Uint8Array | undefined) => void }>();
  private nextId = 1;
  private closed = false;

  private started = false;

  /** The threads start on the first decode (an instance that never sees a JPEG never pays). */
  constructor(threads: number) {
    this.slots = Array.from({ length: threads }, () => ({ worker: undefined, ready: false, inFlight: 0, respawns: 0 }));
  }

  private spawn(slot: Slot): void {
    const worker = new Worker(new URL("./jpeg-worker.ts", import.meta.url));
    worker.unref();
    slot.worker = worker;
    slot.ready = false;
    worker.on("message", (m: { ready?: true; id?: number; data?: Uint8Array }) => {
      if (m.ready === true) {
        slot.ready = true;
        return;
      }
      const p = m.id === undefined ? undefined : this.pending.get(m.id);
      if (p === undefined || m.id === undefined) return;
      this.pending.delete(m.id);
      slot.inFlight--;
      p.resolve(m.data);
    });
    const down = () => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.ready = false;
      slot.inFlight = 0;
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.resolve(undefined);
      }
      if (!this.closed && slot.respawns < MAX_RESPAWNS) {
        slot.respawns++;
        this.spawn(slot);
      }
    };
    worker.on("error", down);
    worker.on("exit", down);
  }

  /** Threads loaded and answering (of `threads`). */
  get readyThreads(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  decode(bytes: Uint8Array, width: number, height: number): Promise<Uint8Array | undefined> | undefined {
    if (!this.started && !this.closed) {
      this.started = true;
      for (const slot of this.slots) this.spawn(slot);
    }
    let best: Slot | undefined;
    for (const s of this.slots) if (s.ready && (best === undefined || s.inFlight < best.inFlight)) best = s;
    if (best === undefined || best.worker === undefined || best.inFlight >= MAX_QUEUED_PER_THREAD) return undefined;
    const slot = best;
    const worker = best.worker;
    const id = this.nextId++;
    // A copy of exactly these bytes, transferred: the view may sit on a larger shared buffer.
    const copy = new Uint8Array(bytes); // (Buffer#slice would not copy)
    slot.inFlight++;
    return new Promise((resolve) => {
      this.pending.set(id, { slot, resolve });
      worker.postMessage({ id, bytes: copy, width, height }, [copy.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.slots.map((s) => s.worker).filter((w) => w !== undefined);
    for (const s of this.slots) {
      s.worker = undefined;
      s.ready = false;
    }
    for (const p of this.pending.values()) p.resolve(undefined);
    this.pending.clear();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** `threads` = 0: the fast decoder on the calling thread. */
export const inlineJpegDecoder: JpegDecoder = {
  decode: (bytes, width, height) => decodeJpegFast(bytes, width, height)?.data,
  close: async () => {},
};

export function createJpegDecoder(threads: number): JpegDecoder {
  return threads > 0 ? new JpegDecodePool(threads) : inlineJpegDecoder;
}
