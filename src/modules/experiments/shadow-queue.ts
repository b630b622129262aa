/** What the shadow queue counts: `run` (candidate answered), `error` (candidate failed), `dropped` (queue full). */
export type ShadowOutcome = "run" | "error" | "dropped";

/**
 * The bounded in-process queue of shadow requests. `push` never waits: a full queue drops a job
 * (counted). Jobs start on a later turn of the event loop (setImmediate), so the served
 * request's answer is written first, and at most `concurrency` run at once. Nothing here is
 * awaited by a request.
 *
 * Bounded in jobs (`max`) and in the bytes they hold (`maxBytes`, measured by `bytes`: a job
 * keeps its request's image until it runs).
 *
 * Fair between customers (`key`): jobs wait in one FIFO per customer and start round-robin, and
 * when the queue is full a customer holding fewer waiting jobs than the busiest one takes the
 * busiest one's newest slot (that job is dropped instead). One customer's traffic cannot keep
 * the others' sampled requests out.
 */
export class ShadowQueue<J> {
  /** Waiting jobs per key; Map order is the round-robin order (a served key moves to the end). */
  private readonly jobs = new Map<string, { job: J; bytes: number }[]>();
  private size = 0;
  private heldBytes = 0;
  private readonly running = new Set<Promise<void>>();
  private readonly max: number;
  private readonly maxBytes: number;
  private readonly concurrency: number;
  private readonly run: (job: J) => Promise<void>;
  private readonly count: (outcome: ShadowOutcome) => void;
  private readonly key: (job: J) => string;
  private readonly bytesOf: (job: J) => number;
  private scheduled = false;
  private closed = false;

  constructor(options: {
    max: number;
    /** The most bytes waiting jobs may hold (default: unbounded). */
    maxBytes?: number;
    concurrency: number;
    run: (job: J) => Promise<void>;
    count: (outcome: ShadowOutcome) => void;
    /** Whose job it is (the customer): the unit of fairness. Default: one key for all. */
    key?: (job: J) => string;
    /** The bytes a waiting job holds (its image). Default: 0. */
    bytes?: (job: J) => number;
  }) {
    this.max = options.max;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.concurrency = options.concurrency;
    this.run = options.run;
    this.count = options.count;
    this.key = options.key ?? (() => "");
    this.bytesOf = options.bytes ?? (() => 0);
  }

  /** Enqueues; false (and counted `dropped`) when the queue is full of this key's fair share, or closed. */
  push(job: J): boolean {
    const bytes = this.bytesOf(job);
    if (this.closed || this.max === 0 || bytes > this.maxBytes) {
      this.count("dropped");
      return false;
    }
    const k = this.key(job);
    const own = this.jobs.get(k);
    // Full: only a key with fewer waiting jobs than the busiest one gets in, at the busiest one's expense.
    while (this.size >= this.max || this.heldBytes + bytes > this.maxBytes) {
      const busiest = this.busiest();
      if (busiest === undefined || busiest.length <= (own?.length ?? 0) + 1) {
        this.count("dropped");
        return false;
      }
      const evicted = busiest.pop() as { bytes: number };
      this.size--;
      this.heldBytes -= evicted.bytes;
      this.count("dropped");
    }
    if (own === undefined) this.jobs.set(k, [{ job, bytes }]);
    else own.push({ job, bytes });
    this.size++;
    this.heldBytes += bytes;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.pump();
      });
    }
    return true;
  }

  /** Jobs waiting (not yet started). */
  get waiting(): number {
    return this.size;
  }

  /** Bytes the waiting jobs hold. */
  get waitingBytes(): number {
    return this.heldBytes;
  }

  get active(): number {
    return this.running.size;
  }

  /** Resolves when nothing waits or runs (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.size > 0 || this.running.size > 0 || this.scheduled) {
      if (this.running.size > 0) await Promise.race(this.running);
      else await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Shutdown: refuses new jobs, drops the waiting ones, and waits for the running ones at most
   * `waitMs` (a candidate call has its model's timeout anyway).
   */
  async close(waitMs: number): Promise<void> {
    this.closed = true;
    this.jobs.clear();
    this.size = 0;
    this.heldBytes = 0;
    if (this.running.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((r) => {
        timer = setTimeout(r, waitMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** The longest waiting FIFO. */
  private busiest(): { bytes: number }[] | undefined {
    let top: { bytes: number }[] | undefined;
    for (const q of this.jobs.values()) if (top === undefined || q.length > top.length) top = q;
    return top;
  }

  /** The next job, round-robin over the keys. */
  private next(): J | undefined {
    for (const [k, q] of this.jobs) {
      const entry = q.shift();
      this.jobs.delete(k);
      if (q.length > 0) this.jobs.set(k, q);
      if (entry !== undefined) {
        this.size--;
        this.heldBytes -= entry.bytes;
        return entry.job;
      }
    }
    return undefined;
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.size > 0) {
      const job = this.next() as J;
      const p = this.run(job).then(
        () => this.count("run"),
        () => this.count("error"),
      );
      this.running.add(p);
      void p.finally(() => {
        this.running.delete(p);
        if (!this.closed) this.pump();
      });
    }
  }
}

/** Distances between two 7-DoF actions: L2 over dims 0-2 and 3-5 (the deltas), |Δ dim 6|. */
export function actionDistances(
  served: readonly number[],
  candidate: readonly number[],
): { translation: number; rotation: number; gripper: number } | null {
  if (served.length < 7 || candidate.length < 7) return null;
  const d = (i: number) => (candidate[i] as number) - (served[i] as number);
  return {
    translation: Math.hypot(d(0), d(1), d(2)),
    rotation: Math.hypot(d(3), d(4), d(5)),
    gripper: Math.abs(d(6)),
  };
}
