import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase } from "../../src/platform/db/client.ts";
import { auditLog, customers } from "../../src/platform/db/schema/index.ts";

/** `npm run cli -- customers suspend|unsuspend`, on an embedded database in a temporary DATA_DIR. */

const root = path.resolve(import.meta.dirname, "../..");
const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-susp-"));
let customerId: string;

function cli(args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, NODE_ENV: "development" };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  return spawnSync(process.execPath, [path.join(root, "src/cli.ts"), ...args], {
    cwd: dataDir,
    encoding: "utf8",
    env,
    timeout: 60_000,
  });
}

async function withDb<T>(fn: (db: Awaited<ReturnType<typeof createDatabase>>) => Promise<T>): Promise<T> {
  const db = await createDatabase({ dataDir });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
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
    const r = cli(["customers", "suspend", customerId, "--reason", "unpaid since October"]);
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
    const again = cli(["customers", "suspend", customerId, "--reason", "again"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^customers suspend: already_suspended: /);
    const r = cli(["customers", "unsuspend", customerId, "--reason", "paid", "--json"]);
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
    const twice = cli(["customers", "unsuspend", customerId]);
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

  it("refuses bad arguments (exit 2) and an unknown customer (exit 1)", () => {
    for (const args of [
      ["customers", "suspend", customerId],
      ["customers", "suspend", customerId, "--reason", "   "],
      ["customers", "suspend", "not-a-uuid", "--reason", "x"],
      ["customers", "suspend", "--reason", "x"],
      ["customers", "suspend", customerId, "--reason", "x".repeat(501)],
      ["customers", "unsuspend", customerId, "--colour", "blue"],
      ["customers", "frobnicate"],
    ]) {
      const r = cli(args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
    }
    const unknown = cli(["customers", "suspend", "00000000-0000-4000-8000-000000000000", "--reason", "x"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/not_found: Customer not found/);
  });
});
