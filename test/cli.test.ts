import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type App, buildApp } from "../src/app.ts";
import { RollupJob } from "../src/modules/analytics/rollup-job.ts";
import { RollupsRepo } from "../src/modules/analytics/rollups.repo.ts";
import { verifyPassword } from "../src/modules/auth/password.ts";
import { createDatabase } from "../src/platform/db/client.ts";
import { DataDirLockedError, LOCK_FILE } from "../src/platform/db/data-dir-lock.ts";
import { customers } from "../src/platform/db/schema/index.ts";
import { Pseudonymizer } from "../src/platform/pseudonym.ts";
import { insertLogs, randomEntry, rng, snapshot } from "./analytics/helpers.ts";
import { testConfig } from "./helpers/app.ts";
import { runCli } from "./helpers/cli.ts";

/** The CLI's commands, run in process (test/cli-entry.test.ts runs src/cli.ts as a process). */

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function cli(args: string[], input = "", dir = dataDir) {
  return runCli(args, { input, dataDir: dir });
}

async function readUser(email: string) {
  const db = await createDatabase({ dataDir });
  try {
    const r = await db.db.execute<{ email: string; is_superuser: boolean; password_hash: string; tier: string }>(
      `select u.email, u.is_superuser, u.password_hash, c.tier from users u join customers c on c.id = u.customer_id where lower(u.email) = lower('${email}')`,
    );
    return (r as unknown as { rows: { email: string; is_superuser: boolean; password_hash: string; tier: string }[] })
      .rows[0];
  } finally {
    await db.close();
  }
}

describe("cli", () => {
  it("migrate applies migrations to the embedded database", async () => {
    const r = await cli(["migrate"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("migrations applied");
  });

  it("create-admin reads the password from stdin and stores only an Argon2id hash", async () => {
    const r = await cli(["create-admin", "--email", "Root@Example.com"], "correct horse battery staple\n");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("created superuser root@example.com");
    const user = await readUser("root@example.com");
    expect(user?.is_superuser).toBe(true);
    expect(user?.password_hash.startsWith("$argon2id$")).toBe(true);
    expect((await verifyPassword(user?.password_hash ?? "", "correct horse battery staple")).ok).toBe(true);
  });

  it("create-admin on an existing email promotes it and sets the password", async () => {
    const r = await cli(["create-admin", "--email", "root@example.com"], "another long passphrase\n");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("promoted");
    const user = await readUser("root@example.com");
    expect((await verifyPassword(user?.password_hash ?? "", "another long passphrase")).ok).toBe(true);
    // Both grants are in the audit log (created, then promoted again), never the password.
    const db = await createDatabase({ dataDir });
    try {
      const r = await db.db.execute(
        "select target_type, details::text as details from audit_log where action = 'user.superuser_grant' order by at, id",
      );
      const rows = (r as unknown as { rows: { target_type: string; details: string }[] }).rows;
      expect(rows.map((x) => [x.target_type, JSON.parse(x.details)])).toEqual([
        ["user", { source: "cli", created: true }],
        ["user", { source: "cli", created: false }],
      ]);
    } finally {
      await db.close();
    }
  });

  it("analytics rebuild recomputes a range with a progress report, equal to what the job built", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "vla-cli-analytics-"));
    try {
      let db = await createDatabase({ dataDir: dir });
      await db.migrate();
      const [c] = await db.db.insert(customers).values({ name: "c", email: "c@example.com" }).returning();
      const r = rng(1);
      const d0 = Date.UTC(2026, 10, 1);
      await insertLogs(
        db,
        Array.from({ length: 200 }, () => randomEntry(r, c?.id as string, d0 + Math.floor(r() * 3 * 86_400_000))),
      );
      // Half counted by the job; the CLI catches up first, then rebuilds.
      await new RollupJob({
        db: db.db,
        repo: new RollupsRepo(new Pseudonymizer("cli-test-secret-key-0123456789abcdef")),
        batchSize: 100,
      }).step();
      await db.close();
      const out = await cli(["analytics", "rebuild", "--from", "2026-11-01", "--to", "2026-11-03"], "", dir);
      expect(out.stderr).toContain("rebuilding: 3/3 days (100 %)");
      expect(out.stdout).toContain("rebuilt analytics for 2026-11-01 .. 2026-11-03: 200 inference rows");
      expect(out.status).toBe(0);
      db = await createDatabase({ dataDir: dir });
      const rebuilt = await snapshot(db);
      await db.db.execute("delete from robot_performance_metrics");
      await db.db.execute("delete from usage_hourly_metrics");
      await db.db.execute("delete from instruction_analytics");
      await db.db.execute("delete from analytics_watermarks");
      await new RollupJob({
        db: db.db,
        repo: new RollupsRepo(new Pseudonymizer("cli-test-secret-key-0123456789abcdef")),
      }).catchUp();
      expect(await snapshot(db)).toEqual(rebuilt);
      await db.close();
      const bad = await cli(["analytics", "rebuild", "--from", "2026-11-05", "--to", "2026-11-01"], "", dir);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain("from <= to");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("prints the usage: exit 0 for help and --help, 2 without a command", async () => {
    const help = await cli(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run cli -- <command> \[options\]/);
    expect(await cli(["help"])).toEqual(help);
    expect(await cli([])).toEqual({ ...help, status: 2 });
  });

  it("refuses weak passwords, bad emails and unknown commands", async () => {
    expect((await cli(["create-admin", "--email", "a@example.com"], "password\n")).status).toBe(2);
    expect((await cli(["create-admin", "--email", "not-an-email"], "long enough password\n")).status).toBe(2);
    const unknown = await cli(["frobnicate"]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown command");
  });
});

describe("cli while the server runs on the same DATA_DIR", () => {
  const serverDir = mkdtempSync(path.join(tmpdir(), "vla-cli-server-"));
  afterAll(() => rmSync(serverDir, { recursive: true, force: true }));
  const startServer = () => buildApp(testConfig({}, serverDir));

  function signIn(app: App, username: string, password: string) {
    return app.inject({
      method: "POST",
      url: "/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: new URLSearchParams({ grant_type: "password", username, password }).toString(),
    });
  }

  it("refuses every database command with a clear message, and nothing is lost", async () => {
    // The server (the same buildApp server.ts runs) opens the embedded database under serverDir.
    const server = await startServer();
    let serverClosed = false;
    try {
      const reg = await server.inject({
        method: "POST",
        url: "/auth/register",
        payload: { email: "owner@example.com", password: "owner long passphrase" },
      });
      expect(reg.statusCode, reg.body).toBe(201);

      const refused = await cli(["create-admin", "--email", "ops@example.com"], "ops long passphrase\n", serverDir);
      expect(refused.status).toBe(75);
      expect(refused.stdout).not.toContain("created superuser");
      expect(refused.stderr).toContain(
        `create-admin: the server is running on DATA_DIR ${serverDir} (pid ${process.pid}`,
      );
      expect(refused.stderr).toContain("Stop the server, run this command, then start the server again");

      const migrate = await cli(["migrate"], "", serverDir);
      expect(migrate.status).toBe(75);
      expect(migrate.stderr).toContain("migrate: the server is running on DATA_DIR");

      // The server is unharmed and never saw the refused admin.
      expect((await signIn(server, "owner@example.com", "owner long passphrase")).statusCode).toBe(200);
      expect((await signIn(server, "ops@example.com", "ops long passphrase")).statusCode).toBe(401);

      await server.close();
      serverClosed = true;
    } finally {
      if (!serverClosed) await server.close();
    }
    expect(existsSync(path.join(serverDir, LOCK_FILE))).toBe(false);

    // The supported way: with the server stopped.
    const created = await cli(["create-admin", "--email", "ops@example.com"], "ops long passphrase\n", serverDir);
    expect(created.stderr).toBe("");
    expect(created.status).toBe(0);
    expect(created.stdout).toContain("created superuser ops@example.com");

    const restarted = await startServer();
    try {
      const ops = await signIn(restarted, "ops@example.com", "ops long passphrase");
      expect(ops.statusCode, ops.body).toBe(200);
      const me = await restarted.inject({
        method: "GET",
        url: "/auth/me",
        headers: { authorization: `Bearer ${(ops.json() as { access_token: string }).access_token}` },
      });
      expect(me.json()).toMatchObject({ email: "ops@example.com", is_superuser: true });
      expect((await signIn(restarted, "owner@example.com", "owner long passphrase")).statusCode).toBe(200);
    } finally {
      await restarted.close();
    }
  });

  it("a second server on the same DATA_DIR refuses to start", async () => {
    const server = await startServer();
    try {
      await expect(startServer()).rejects.toBeInstanceOf(DataDirLockedError);
      // src/server.ts as a process refusing with exit code 75: test/cli-entry.test.ts.
    } finally {
      await server.close();
    }
  });
});
