import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { verifyPassword } from "../src/modules/auth/password.ts";
import { createDatabase } from "../src/platform/db/client.ts";

const root = path.resolve(import.meta.dirname, "..");
const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function cli(args: string[], input = "") {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, NODE_ENV: "development" };
  delete env.DATABASE_URL;
  return spawnSync(process.execPath, [path.join(root, "src/cli.ts"), ...args], {
    cwd: dataDir,
    input,
    encoding: "utf8",
    env,
    timeout: 60_000,
  });
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
  it("migrate applies migrations to the embedded database", () => {
    const r = cli(["migrate"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("migrations applied");
  });

  it("create-admin reads the password from stdin and stores only an Argon2id hash", async () => {
    const r = cli(["create-admin", "--email", "Root@Example.com"], "correct horse battery staple\n");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("created superuser root@example.com");
    const user = await readUser("root@example.com");
    expect(user?.is_superuser).toBe(true);
    expect(user?.password_hash.startsWith("$argon2id$")).toBe(true);
    expect((await verifyPassword(user?.password_hash ?? "", "correct horse battery staple")).ok).toBe(true);
  });

  it("create-admin on an existing email promotes it and sets the password", async () => {
    const r = cli(["create-admin", "--email", "root@example.com"], "another long passphrase\n");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("promoted");
    const user = await readUser("root@example.com");
    expect((await verifyPassword(user?.password_hash ?? "", "another long passphrase")).ok).toBe(true);
  });

  it("refuses weak passwords, bad emails and unknown commands", () => {
    expect(cli(["create-admin", "--email", "a@example.com"], "password\n").status).toBe(2);
    expect(cli(["create-admin", "--email", "not-an-email"], "long enough password\n").status).toBe(2);
    const unknown = cli(["frobnicate"]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("unknown command");
  });
});
