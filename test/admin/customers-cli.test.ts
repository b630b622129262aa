import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashKey } from "../../src/modules/api-keys/key-format.ts";
import type { Database } from "../../src/platform/db/client.ts";
import { apiKeys, auditLog, customers } from "../../src/platform/db/schema/index.ts";
import { runCli, withDataDir } from "../helpers/cli.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-admin-"));
let customerId = "";
let otherId = "";

function cli(args: string[]) {
  return runCli(args, { dataDir });
}

function withDb<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  return withDataDir(dataDir, fn);
}

beforeAll(async () => {
  expect((await cli(["migrate"])).status).toBe(0);
  await withDb(async (db) => {
    const rows = await db.db
      .insert(customers)
      .values([
        { name: "Acme Robotics", email: "ops@acme.example", company: "Acme GmbH", tier: "pro" },
        { name: "Other", email: "other@example.com" },
      ])
      .returning({ id: customers.id });
    customerId = rows[0]?.id ?? "";
    otherId = rows[1]?.id ?? "";
  });
}, 60_000);
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe("cli customers and keys", () => {
  it("customers list prints a table, filters by --q and --tier, and --json is machine output", async () => {
    const t = await cli(["customers", "list"]);
    expect(t.stderr).toBe("");
    expect(t.status).toBe(0);
    expect(t.stdout.split("\n")[0]).toMatch(/^ID\s+EMAIL\s+NAME\s+TIER/);
    expect(t.stdout).toContain("ops@acme.example");
    const j = await cli(["customers", "list", "--q", "ACME", "--tier", "pro", "--json"]);
    expect(j.status).toBe(0);
    const body = JSON.parse(j.stdout) as { data: { id: string; tier: string }[] };
    expect(body.data.map((c) => c.id)).toEqual([customerId]);
    const none = JSON.parse((await cli(["customers", "list", "--tier", "enterprise", "--json"])).stdout) as {
      data: unknown[];
    };
    expect(none.data).toEqual([]);
  }, 60_000);

  it("customers list pages with --limit and --cursor, prints the next cursor, and --all walks every page", async () => {
    const ids = await withDb(async (db) =>
      (
        await db.db
          .insert(customers)
          .values([1, 2, 3, 4, 5].map((i) => ({ name: `Pager ${i}`, email: `pager${i}@example.com` })))
          .returning({ id: customers.id })
      ).map((r) => r.id),
    );
    type Page = { data: { id: string }[]; more: boolean; next_cursor: string | null };
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const args = ["customers", "list", "--q", "pager", "--limit", "2", "--json"];
      const r = await cli(cursor === null ? args : [...args, "--cursor", cursor]);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const page = JSON.parse(r.stdout) as Page;
      expect(page.more).toBe(page.next_cursor !== null);
      seen.push(...page.data.map((c) => c.id));
      sizes.push(page.data.length);
      cursor = page.next_cursor ?? null;
    } while (cursor !== null && sizes.length < 10);
    expect(sizes).toEqual([2, 2, 1]);
    expect([...seen].sort()).toEqual([...ids].sort());

    const all = await cli(["customers", "list", "--q", "pager", "--limit", "2", "--all", "--json"]);
    expect(all.status).toBe(0);
    const everything = JSON.parse(all.stdout) as Page;
    expect(everything.data.map((c) => c.id)).toEqual(seen);
    expect(everything).toMatchObject({ more: false, next_cursor: null });

    const table = await cli(["customers", "list", "--q", "pager", "--limit", "2"]);
    expect(table.status).toBe(0);
    const first = JSON.parse(
      (await cli(["customers", "list", "--q", "pager", "--limit", "2", "--json"])).stdout,
    ) as Page;
    expect(table.stdout).toContain(`--cursor ${first.next_cursor}`);
    const rest = await cli(["customers", "list", "--q", "pager", "--all", "--cursor", first.next_cursor ?? ""]);
    expect(rest.stdout.trimEnd().split("\n")).toHaveLength(1 + 3);
    expect(rest.stdout).not.toContain("--cursor");

    const asc = await cli(["customers", "list", "--order", "asc", "--cursor", first.next_cursor ?? "", "--json"]);
    expect(asc.status).toBe(2);
    expect(asc.stderr).toContain("--cursor");
    expect((await cli(["customers", "list", "--cursor", "not-a-cursor"])).status).toBe(2);
    expect((await cli(["customers", "list", "--order", "up"])).status).toBe(2);
  }, 60_000);

  it("customers show prints the customer; --json has limits and usage", async () => {
    const t = await cli(["customers", "show", customerId]);
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(/tier\s+pro/);
    expect(t.stdout).toContain("100/min 10000/day 100000/month");
    const j = JSON.parse((await cli(["customers", "show", customerId, "--json"])).stdout);
    expect(j.customer).toMatchObject({ id: customerId, tier: "pro" });
    expect(j.usage.last_30_days).toHaveLength(30);
    expect((await cli(["customers", "show", "00000000-0000-0000-0000-000000000000"])).status).toBe(1);
    expect((await cli(["customers", "show", "nope"])).status).toBe(2);
  }, 60_000);

  it("customers tier changes the tier with an audit entry acted by the cli", async () => {
    const r = await cli(["customers", "tier", otherId, "enterprise", "--reason", "contract 7"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("tier free -> enterprise");
    await withDb(async (db) => {
      const [c] = await db.db.select().from(customers).where(eq(customers.id, otherId));
      expect(c?.tier).toBe("enterprise");
      const entries = await db.db.select().from(auditLog).where(eq(auditLog.customerId, otherId));
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatchObject({
        action: "customer.tier_change",
        actorUserId: null,
        details: { from: "free", to: "enterprise", reason: "contract 7", source: "cli" },
      });
    });
    expect((await cli(["customers", "tier", otherId, "gold", "--reason", "x"])).status).toBe(2);
    expect((await cli(["customers", "tier", otherId, "pro"])).status).toBe(2); // no reason
    expect(
      (await cli(["customers", "tier", "00000000-0000-0000-0000-000000000000", "pro", "--reason", "x"])).status,
    ).toBe(1);
  }, 60_000);

  it("keys create prints the key once and stores only its hash, audited", async () => {
    const r = await cli([
      "keys",
      "create",
      "--customer",
      customerId,
      "--name",
      "arm-1",
      "--scopes",
      "inference,admin",
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { id: string; key: string; scopes: string[] };
    expect(out.key).toMatch(/^vla_live_/);
    expect(out.scopes).toEqual(["inference", "admin"]);
    await withDb(async (db) => {
      const [k] = await db.db.select().from(apiKeys).where(eq(apiKeys.id, out.id));
      expect(k?.keyHash).toBe(hashKey(out.key));
      expect(JSON.stringify(k)).not.toContain(out.key);
      const entries = await db.db.select().from(auditLog).where(eq(auditLog.targetId, out.id));
      expect(entries[0]).toMatchObject({ action: "api_key.create", customerId, details: { source: "cli" } });
      expect(JSON.stringify(entries)).not.toContain(out.key);
    });
    expect((await cli(["keys", "create", "--customer", customerId, "--name", "x", "--scopes", "root"])).status).toBe(2);
    expect((await cli(["keys", "create", "--name", "x"])).status).toBe(2);
    expect(
      (await cli(["keys", "create", "--customer", "00000000-0000-0000-0000-000000000000", "--name", "x"])).status,
    ).toBe(1);
  }, 60_000);
});
