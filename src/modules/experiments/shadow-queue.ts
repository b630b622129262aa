/** What the shadow queue counts: `run` (candidate answered), `error` (candidate failed), `dropped` (queue full). */
export type ShadowOutcome = "run" | "error" | "dropped";

/**
 * The bounded in-process queue of shadow requests. `push` never waits: a full queue drops the
 * job (counted). Jobs start on a later turn of the event loop (setImmediate), so the served
 * request's answer is written first, and at most `concurrency` run at once. Nothing here is
 * awaited by a request.
 */
export class ShadowQueue<J> {
  private readonly jobs: J[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly max: number;
  private readonly concurrency: number;
  private readonly run: (job: J) => Promise<void>;
  private readonly count: (outcome: ShadowOutcome) => void;
  private scheduled = false;
  private closed = false;

  constructor(options: {
    max: number;
    concurrency: number;
    run: (job: J) => Promise<void>;
    count: (outcome: ShadowOutcome) => void;
  }) {
    this.max = options.max;
    this.concurrency = options.concurrency;
    this.run = options.run;
    this.count = options.count;
  }

  /** Enqueues; false (and counted `dropped`) when the queue is full or closed. */
  push(job: J): boolean {
    if (this.closed || this.jobs.length >= this.max) {
      this.count("dropped");
      return false;
    }
    this.jobs.push(job);
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
    return this.jobs.length;
  }

  get active(): number {
    return this.running.size;
  }

  /** Resolves when nothing waits or runs (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.jobs.length > 0 || this.running.size > 0 || this.scheduled) {
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
    this.jobs.length = 0;
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

  private pump(): void {
    while (this.running.size < this.concurrency && this.jobs.length > 0) {
      const job = this.jobs.shift() as J;
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
