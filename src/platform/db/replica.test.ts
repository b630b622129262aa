import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../config.ts";
import { isRetryableOnPrimary, LAG_SQL, type QueryPool, ReadRouter } from "./replica.ts";

/** A pool answering every query with `who`, or with the health row / error it is told to. */
class FakePool implements QueryPool {
  lag: number | null = 0;
  checkError: Error | undefined;
  queryError: Error | undefined;
  readonly seen: string[] = [];
  readonly who: string;
  constructor(who: string) {
    this.who = who;
  }
  async query(...args: unknown[]): Promise<unknown> {
    const first = args[0];
    const text = typeof first === "string" ? first : (first as { text: string }).text;
    if (text === LAG_SQL) {
      if (this.checkError !== undefined) throw this.checkError;
      return { rows: [{ in_recovery: true, lag_s: this.lag }] };
    }
    this.seen.push(text);
    if (this.queryError !== undefined) throw this.queryError;
    return { rows: [{ who: this.who }], fields: [{ name: "who", dataTypeID: 25 }], rowCount: 1, command: "SELECT" };
  }
  async connect(): Promise<pg.PoolClient> {
    return { query: (...a: unknown[]) => this.query(...a), release: () => {} } as unknown as pg.PoolClient;
  }
}

function setup(maxLagMs = 1_000) {
  const primary = new FakePool("primary");
  const replica = new FakePool("replica");
  const router = new ReadRouter({ primary, replica, maxLagMs, checkMs: 0 });
  const who = async () => ((await router.pool.query("select who")) as { rows: { who: string }[] }).rows[0]?.who;
  return { primary, replica, router, who };
}

const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5433"), { code: "ECONNREFUSED" });

describe("read replica router", () => {
  it("is a pg.Pool, so drizzle runs transactions on one checked-out connection", () => {
    expect(setup().router.pool).toBeInstanceOf(pg.Pool);
  });

  it("reads from the primary until a check finds the replica usable, then from the replica", async () => {
    const { router, who } = setup();
    expect(await who()).toBe("primary");
    await router.check();
    expect(router.state()).toMatchObject({ usable: true, lagSeconds: 0, reason: null });
    expect(await who()).toBe("replica");
    expect(router.state().reads).toEqual({ replica: 1, primary: 1, fallback: 0 });
  });

  it("goes back to the primary while the lag is above the bound, and returns when it is within", async () => {
    const { router, replica, who } = setup(1_000);
    replica.lag = 2.5;
    await router.check();
    expect(router.state()).toMatchObject({ usable: false, lagSeconds: 2.5 });
    expect(router.state().reason).toMatch(/lag 2\.500 s above the bound of 1000 ms/);
    expect(await who()).toBe("primary");
    replica.lag = 0.5;
    await router.check();
    expect(await who()).toBe("replica");
  });

  it("treats an unknown lag and a failing check as not usable", async () => {
    const { router, replica, who } = setup();
    replica.lag = null;
    await router.check();
    expect(router.state().usable).toBe(false);
    replica.lag = 0;
    replica.checkError = refused;
    await router.check();
    expect(router.state()).toMatchObject({ usable: false, reason: "connect ECONNREFUSED 127.0.0.1:5433" });
    expect(await who()).toBe("primary");
  });

  it("retries a read that failed on the replica with a connection error on the primary, and stops using the replica", async () => {
    const { router, replica, primary, who } = setup();
    await router.check();
    replica.queryError = refused;
    expect(await who()).toBe("primary");
    expect(router.state()).toMatchObject({ usable: false, reads: { replica: 0, primary: 0, fallback: 1 } });
    expect(await who()).toBe("primary");
    expect(replica.seen).toHaveLength(1); // the second read did not try the replica
    expect(primary.seen).toHaveLength(2);
  });

  it("does not retry other errors (a bad query fails on the primary just the same)", async () => {
    const { router, replica, primary, who } = setup();
    await router.check();
    replica.queryError = Object.assign(new Error('syntax error at or near "selec"'), { code: "42601" });
    await expect(who()).rejects.toThrow(/syntax error/);
    expect(primary.seen).toHaveLength(0);
    expect(router.state().usable).toBe(true);
  });

  it("routes drizzle queries and transactions", async () => {
    const { router } = setup();
    await router.check();
    const db = drizzle({ client: router.pool });
    const r = await db.execute(sql`select who`);
    expect(r.rows).toEqual([{ who: "replica" }]);
    const inTx = await db.transaction(async (tx) => (await tx.execute(sql`select who`)).rows);
    expect(inTx).toEqual([{ who: "replica" }]);
  });

  it("classifies connection failures and recovery conflicts as retryable", () => {
    for (const code of ["08006", "57P01", "57P03", "40001", "ECONNRESET"]) {
      expect(isRetryableOnPrimary(Object.assign(new Error("x"), { code }))).toBe(true);
    }
    expect(isRetryableOnPrimary(new Error("Connection terminated unexpectedly"))).toBe(true);
    expect(isRetryableOnPrimary(Object.assign(new Error("x"), { code: "25006" }))).toBe(false);
    expect(isRetryableOnPrimary("nope")).toBe(false);
  });
});

describe("read replica configuration", () => {
  const load = (env: Record<string, string>) =>
    loadConfig(
      { NODE_ENV: "test", DATA_DIR: "/tmp/vla-replica-config-test", ...env },
      { dotenv: false, persistGeneratedSecret: false },
    );

  it("reads DATABASE_READ_URL and its bounds", () => {
    const db = load({
      DATABASE_URL: "postgres://app@db:5432/vla",
      DATABASE_READ_URL: "postgres://app@replica:5432/vla",
      DATABASE_READ_MAX_LAG_MS: "2000",
    }).db;
    expect(db).toMatchObject({ readUrl: "postgres://app@replica:5432/vla", readMaxLagMs: 2000, readCheckMs: 1000 });
    expect(load({}).db.readUrl).toBeUndefined();
  });

  it("refuses a replica without DATABASE_URL", () => {
    expect(() => load({ DATABASE_READ_URL: "postgres://app@replica:5432/vla" })).toThrow(
      /DATABASE_READ_URL: a read replica needs DATABASE_URL/,
    );
  });
});
