import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, expect, it } from "vitest";
import { createDatabase } from "../../src/platform/db/client.ts";
import { customers, users } from "../../src/platform/db/schema/index.ts";
import { runCli } from "../helpers/cli.ts";
import { ndjson, untar } from "./helpers.ts";

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-export-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function cli(args: string[]) {
  return runCli(args, { dataDir, env: { LOG_LEVEL: "warn" } });
}

it("export --customer writes the account archive (a tar.gz the system tar reads) to --out", async () => {
  expect((await cli(["migrate"])).status).toBe(0);
  const db = await createDatabase({ dataDir });
  let customerId: string;
  try {
    const [c] = await db.db.insert(customers).values({ name: "Acme", email: "ops@acme.test" }).returning();
    customerId = (c as { id: string }).id;
    await db.db.insert(users).values({ customerId, email: "ops@acme.test", passwordHash: "$argon2id$secret-hash" });
  } finally {
    await db.close();
  }
  const out = path.join(dataDir, "acme.tar.gz");
  const r = await cli(["export", "--customer", customerId, "--out", out]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(`wrote ${out}`);
  expect(statSync(out).mode & 0o777).toBe(0o600);

  const listed = spawnSync("tar", ["-tzf", out], { encoding: "utf8" });
  expect(listed.status).toBe(0);
  expect(listed.stdout.split("\n")).toEqual(
    expect.arrayContaining(["profile.ndjson", "members.ndjson", "manifest.json"]),
  );
  const files = untar(readFileSync(out));
  expect(ndjson(files.get("profile.ndjson"))[0]).toMatchObject({ id: customerId, name: "Acme" });
  expect(ndjson(files.get("members.ndjson"))[0]).toMatchObject({ email: "ops@acme.test" });
  expect([...files.values()].join("\n")).not.toContain("secret-hash");

  const bad = await cli(["export", "--customer", "nope"]);
  expect(bad.status).toBe(2);
  const unknown = await cli(["export", "--customer", "00000000-0000-4000-8000-000000000000", "--out", out]);
  expect(unknown.status).toBe(1);
  expect(unknown.stderr).toContain("no customer");
});
