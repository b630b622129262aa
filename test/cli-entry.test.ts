import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { testConfig } from "./helpers/app.ts";
import { spawnCli, spawnScript } from "./helpers/cli.ts";

/**
 * The entry points as processes: `node src/cli.ts` (npm run cli / npm run migrate) and
 * `node src/server.ts`, as an operator's shell sees them: exit codes, stdin, stdout. The
 * commands themselves are tested in process (test/cli.test.ts and the test/<module>/cli tests).
 */

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-cli-entry-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe("node src/cli.ts", () => {
  it("--help prints the usage and exits 0", () => {
    const help = spawnCli(["--help"], { dataDir });
    expect(help.stderr).toBe("");
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run cli -- <command> \[options\]/);
  });

  it("migrate exits 0", () => {
    const migrate = spawnCli(["migrate"], { dataDir });
    expect(migrate.stderr).toBe("");
    expect(migrate.status).toBe(0);
    expect(migrate.stdout).toContain(`migrations applied to embedded PGlite at ${dataDir}`);
  });
});

describe("the entry points while the server runs on the same DATA_DIR", () => {
  it("the CLI exits 75 and a second server exits 75", async () => {
    // The DATA_DIR migrated above: the server opens it without migrating again.
    const server = await buildApp(testConfig({}, dataDir));
    try {
      const migrate = spawnCli(["migrate"], { dataDir });
      expect(migrate.status).toBe(75);
      expect(migrate.stderr).toContain(`migrate: the server is running on DATA_DIR ${dataDir} (pid ${process.pid}`);
      expect(migrate.stdout).toBe("");

      const second = spawnScript("src/server.ts", [], {
        dataDir,
        env: { HOST: "127.0.0.1", PORT: "0", BOOTSTRAP_DEMO: "off" },
      });
      expect(second.status).toBe(75);
      expect(second.stderr).toContain(
        `cannot start: the embedded database in DATA_DIR ${dataDir} is in use by the server`,
      );
      expect(second.stdout).not.toContain("listening");
    } finally {
      await server.close();
    }
  });
});
