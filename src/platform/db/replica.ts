import pg from "pg";

/**
 * Read replica routing (DATABASE_READ_URL; docs/operations.md "Read replica").
 *
 * `RoutingPool` is a pg.Pool that owns no connections: each query (and each connection a
 * transaction checks out) goes to the replica's pool while the health monitor says the replica
 * is usable, else to the primary's. Drizzle's node-postgres session treats it as a pool
 * (`instanceof Pool`), so `db.transaction` on the read handle checks out one connection from
 * whichever side is in use. A query failing on the replica with a connection error (or a
 * recovery conflict) is retried once on the primary: only read-only work goes through this pool.
 */

export type ReadTarget = "replica" | "primary" | "fallback";

export interface ReplicaState {
  /** The last check succeeded with lag within the bound, and no connection failed since. */
  readonly usable: boolean;
  /** Replay lag at the last successful check (0 when caught up); null before any. */
  readonly lagSeconds: number | null;
  /** Why the replica is not usable (the last check's error, or the lag), else null. */
  readonly reason: string | null;
  /** Reads served so far: on the replica, on the primary (replica not usable), retried on the primary. */
  readonly reads: Readonly<Record<ReadTarget, number>>;
}

/** The queries a router sends; a pg.Pool satisfies it (tests pass fakes). */
export interface QueryPool {
  query(...args: unknown[]): Promise<unknown>;
  connect(): Promise<pg.PoolClient>;
}

export interface ReadRouterOptions {
  readonly primary: QueryPool;
  readonly replica: QueryPool;
  /** Above this replay lag the replica is not used. */
  readonly maxLagMs: number;
  /** Interval between health checks; 0 disables the timer (tests call `check()`). */
  readonly checkMs: number;
  /** A check slower than this counts as failed. Default min(checkMs, 2000), at least 200. */
  readonly checkTimeoutMs?: number;
}

/**
 * Lag in seconds: 0 when everything received has been replayed (an idle primary sends nothing, so
 * the last replayed commit's age would grow forever), else the age of the last replayed commit.
 * Not in recovery (a promoted replica, or a primary given as replica): lag 0.
 */
export const LAG_SQL = `select pg_is_in_recovery() as in_recovery,
  case when not pg_is_in_recovery() then 0
       when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
       else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end as lag_s`;

/** Connection-level failures (and recovery conflicts): the same read may succeed on the primary. */
export function isRetryableOnPrimary(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now;
  // 40001: "canceling statement due to conflict with recovery" on a standby.
  if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "40001") {
    return true;
  }
  if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE"].includes(code)) return true;
  const message = typeof e.message === "string" ? e.message : "";
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    message,
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`replica check timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class ReadRouter {
  private usable = false;
  private lagSeconds: number | null = null;
  private reason: string | null = "not checked yet";
  private readonly reads: Record<ReadTarget, number> = { replica: 0, primary: 0, fallback: 0 };
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly checkTimeoutMs: number;
  readonly pool: RoutingPool;
  private readonly o: ReadRouterOptions;

  constructor(o: ReadRouterOptions) {
    this.o = o;
    this.checkTimeoutMs = o.checkTimeoutMs ?? Math.max(200, Math.min(o.checkMs || 2_000, 2_000));
    this.pool = new RoutingPool(this);
  }

  /** Starts the periodic checks (after a first one, awaited). */
  async start(): Promise<void> {
    await this.check();
    if (this.o.checkMs > 0 && this.timer === undefined) {
      this.timer = setInterval(() => void this.check(), this.o.checkMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One health check of the replica; concurrent callers share it. Never throws. */
  check(): Promise<void> {
    this.checking ??= this.runCheck().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async runCheck(): Promise<void> {
    try {
      const r = (await withTimeout(this.o.replica.query(LAG_SQL), this.checkTimeoutMs)) as {
        rows: { in_recovery: boolean; lag_s: number | string | null }[];
      };
      const row = r.rows[0];
      const lag = row?.lag_s === null || row?.lag_s === undefined ? null : Number(row.lag_s);
      this.lagSeconds = lag;
      if (lag === null || !Number.isFinite(lag)) {
        this.markDown("replay lag unknown (nothing replayed yet)");
      } else if (lag * 1000 > this.o.maxLagMs) {
        this.markDown(`replay lag ${lag.toFixed(3)} s above the bound of ${this.o.maxLagMs} ms`);
      } else {
        this.usable = true;
        this.reason = null;
      }
    } catch (err) {
      this.markDown(err instanceof Error ? err.message : String(err));
    }
  }

  private markDown(reason: string): void {
    this.usable = false;
    this.reason = reason;
  }

  /**
   * True once the replica has replayed everything the primary had written when called (so a read
   * there sees those writes), polling until `timeoutMs`; false when it does not get there in time
   * or is not usable.
   */
  async caughtUp(timeoutMs: number): Promise<boolean> {
    if (!this.usable) return false;
    try {
      const p = (await this.o.primary.query("select pg_current_wal_lsn()::text as lsn")) as { rows: { lsn: string }[] };
      const lsn = p.rows[0]?.lsn;
      if (lsn === undefined) return false;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = (await withTimeout(
          this.o.replica.query("select not pg_is_in_recovery() or pg_last_wal_replay_lsn() >= $1::pg_lsn as ok", [lsn]),
          this.checkTimeoutMs,
        )) as { rows: { ok: boolean }[] };
        if (r.rows[0]?.ok === true) return true;
        if (Date.now() >= deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } catch {
      return false;
    }
  }

  state(): ReplicaState {
    return { usable: this.usable, lagSeconds: this.lagSeconds, reason: this.reason, reads: { ...this.reads } };
  }

  /** Runs `fn` on the replica when usable (retried once on the primary on a connection error), else on the primary. */
  async route<T>(fn: (pool: QueryPool) => Promise<T>): Promise<T> {
    if (!this.usable) {
      this.reads.primary++;
      return fn(this.o.primary);
    }
    try {
      const result = await fn(this.o.replica);
      this.reads.replica++;
      return result;
    } catch (err) {
      if (!isRetryableOnPrimary(err)) throw err;
      // Do not wait for the next check to stop sending reads to a replica that is going away.
      this.markDown(`read failed on the replica: ${err instanceof Error ? err.message : String(err)}`);
      this.reads.fallback++;
      return fn(this.o.primary);
    }
  }
}

/** A pg.Pool in type and prototype (drizzle checks), delegating to the primary or the replica. */
export class RoutingPool extends pg.Pool {
  readonly #router: ReadRouter;

  constructor(router: ReadRouter) {
    super({ max: 1 }); // never connects itself
    this.#router = router;
  }

  // biome-ignore lint/suspicious/noExplicitAny: pg.Pool's overloads; drizzle calls query(config, params)
  override query(...args: any[]): any {
    return this.#router.route((pool) => pool.query(...args));
  }

  // biome-ignore lint/suspicious/noExplicitAny: pg.Pool's overloads; drizzle calls connect() with no callback
  override connect(...args: any[]): any {
    if (args.length > 0) throw new Error("RoutingPool.connect: callbacks are not supported");
    return this.#router.route((pool) => pool.connect());
  }

  override async end(): Promise<void> {}
}
