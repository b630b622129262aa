import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { and, eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type Database } from "../../src/platform/db/client.ts";
import { auditLog, customers } from "../../src/platform/db/schema/index.ts";
import { expectProblem } from "../auth/helpers.ts";
import { usingRealServices } from "../helpers/app.ts";
import { runCli, withDataDir } from "../helpers/cli.ts";
import { hasRedis } from "../helpers/limits.ts";
import { buildAdminApp, newTenant } from "./suspension-helpers.ts";

/** `npm run cli -- customers suspend|unsuspend`, on an embedded database in a temporary DATA_DIR. */

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-susp-"));
let customerId: string;

function cli(args: string[], services: Record<string, string> = {}) {
  return runCli(args, { dataDir, env: services });
}

function withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  return withDataDir(dataDir, fn);
}

beforeAll(async () => {
  customerId = await withDb(async (db) => {
    await db.migrate();
    const [c] = await db.db.insert(customers).values({ name: "Acme Robots", email: "ops@acme.example" }).returning();
    return (c as { id: string }).id;
  });
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe("cli customers suspend / unsuspend", () => {
  it("suspends with a reason (table output), audited with actor none and source cli", async () => {
    const r = await cli(["customers", "suspend", customerId, "--reason", "unpaid since October"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^customer\s+[0-9a-f-]{36}$/m);
    expect(r.stdout).toMatch(/^status\s+suspended$/m);
    expect(r.stdout).toMatch(/^reason\s+unpaid since October$/m);
    await withDb(async (db) => {
      const [c] = await db.db.select().from(customers).where(eq(customers.id, customerId));
      expect(c?.suspendedAt).toBeInstanceOf(Date);
      expect(c?.suspendedReason).toBe("unpaid since October");
      const rows = await db.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.customerId, customerId), eq(auditLog.action, "customer.suspend")));
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        actorUserId: null,
        actorCustomerId: null,
        targetType: "customer",
        targetId: customerId,
        details: { reason: "unpaid since October", source: "cli" },
      });
    });
  });

  it("a second suspend exits 1 with already_suspended; unsuspend --json prints the customer as JSON", async () => {
    const again = await cli(["customers", "suspend", customerId, "--reason", "again"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^customers suspend: already_suspended: /);
    const r = await cli(["customers", "unsuspend", customerId, "--reason", "paid", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      customer_id: customerId,
      name: "Acme Robots",
      status: "active",
      suspended_at: null,
      suspended_reason: null,
      members: 0,
    });
    const twice = await cli(["customers", "unsuspend", customerId]);
    expect(twice.status).toBe(1);
    expect(twice.stderr).toMatch(/not_suspended/);
    await withDb(async (db) => {
      const rows = await db.db
        .select()
        .from(auditLog)
        .where(and(eq(auditLog.customerId, customerId), eq(auditLog.action, "customer.unsuspend")));
      expect(rows.map((x) => x.details)).toEqual([
        expect.objectContaining({ reason: "paid", suspended_reason: "unpaid since October", source: "cli" }),
      ]);
    });
  });

  it("refuses bad arguments (exit 2) and an unknown customer (exit 1)", async () => {
    for (const args of [
      ["customers", "suspend", customerId],
      ["customers", "suspend", customerId, "--reason", "   "],
      ["customers", "suspend", "not-a-uuid", "--reason", "x"],
      ["customers", "suspend", "--reason", "x"],
      ["customers", "suspend", customerId, "--reason", "x".repeat(501)],
      ["customers", "unsuspend", customerId, "--colour", "blue"],
      ["customers", "frobnicate"],
    ]) {
      const r = await cli(args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
    }
    const unknown = await cli(["customers", "suspend", "00000000-0000-4000-8000-000000000000", "--reason", "x"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/not_found: Customer not found/);
  });
});

describe.skipIf(!(usingRealServices && hasRedis))("cli alongside a running server (PostgreSQL and Redis)", () => {
  it("a suspend from the CLI stops the server's cached key and session at once; unsuspend restores them", async () => {
    const server = process.env.TEST_DATABASE_URL as string;
    const name = `vla_t_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: server });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const url = new URL(server);
    url.pathname = `/${name}`;
    const database = await createDatabase({ url: url.toString(), poolMax: 5 });
    await database.migrate();
    const prefix = `t:cli-${randomBytes(6).toString("hex")}:`;
    // Verified keys stay fresh for ten minutes: only the CLI's broadcast can make the server notice.
    const app = await buildAdminApp({
      database,
      redisKeyPrefix: prefix,
      env: { API_KEY_CACHE_FRESH_MS: "600000", API_KEY_CACHE_STALE_MS: "600000" },
    });
    try {
      const v = await newTenant(app, "cli-live");
      const usage = () => app.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": v.key } });
      expect((await usage()).statusCode).toBe(200);
      const services = {
        DATABASE_URL: url.toString(),
        REDIS_URL: process.env.TEST_REDIS_URL as string,
        REDIS_KEY_PREFIX: prefix,
      };
      const r = await cli(["customers", "suspend", v.customerId, "--reason", "from the cli"], services);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      let res = await usage();
      for (let i = 0; i < 250 && res.statusCode === 200; i++) {
        await new Promise((x) => setTimeout(x, 20));
        res = await usage();
      }
      expect(expectProblem(res, 403, "customer_suspended").suspended_reason).toBe("from the cli");
      const me = await app.app.inject({
        method: "GET",
        url: "/auth/me",
        headers: { authorization: `Bearer ${v.access}` },
      });
      expectProblem(me, 403, "customer_suspended");
      expect((await cli(["customers", "unsuspend", v.customerId], services)).status).toBe(0);
      for (let i = 0; i < 250 && res.statusCode !== 200; i++) {
        await new Promise((x) => setTimeout(x, 20));
        res = await usage();
      }
      expect(res.statusCode).toBe(200);
    } finally {
      await app.close();
      await database.close();
      const c = new pg.Client({ connectionString: server });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    }
  });
});
