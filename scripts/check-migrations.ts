/**
 * Migration drift check (CI): regenerate migrations from the schema in code into a scratch
 * copy of migrations/ and fail if drizzle-kit finds anything to add. A failure means someone
 * changed src/platform/db/schema without running `npm run db:generate` (or hand-edited SQL
 * that no longer matches the schema snapshot).
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const scratch = mkdtempSync(path.join(tmpdir(), "vla-drift-"));
try {
  const out = path.join(scratch, "migrations");
  cpSync(path.join(root, "migrations"), out, { recursive: true });
  const before = new Set(readdirSync(out));
  const configFile = path.join(scratch, "drizzle.config.json");
  writeFileSync(
    configFile,
    // drizzle-kit resolves both paths relative to its working directory.
    JSON.stringify({
      dialect: "postgresql",
      schema: path.relative(scratch, path.join(root, "src/platform/db/schema/index.ts")),
      out: "./migrations",
    }),
  );
  const bin = path.join(root, "node_modules/.bin/drizzle-kit");
  const run = spawnSync(bin, ["generate", "--config", configFile, "--name", "drift"], {
    cwd: scratch,
    encoding: "utf8",
  });
  // drizzle-kit can print an error and still exit 0, so check its words as well as its status.
  if (
    run.status !== 0 ||
    /error/i.test(run.stderr) ||
    !/No schema changes|migration file/i.test(run.stdout + run.stderr)
  ) {
    process.stderr.write(run.stdout + run.stderr);
    process.stderr.write("migration check: drizzle-kit failed\n");
    process.exit(1);
  }
  const added = readdirSync(out).filter((f) => !before.has(f) && f.endsWith(".sql"));
  if (added.length > 0) {
    for (const f of added) process.stderr.write(`--- ${f}\n${readFileSync(path.join(out, f), "utf8")}\n`);
    process.stderr.write(
      "migration check: the schema in src/platform/db/schema differs from migrations/. Run `npm run db:generate` and commit the result.\n",
    );
    process.exit(1);
  }
  process.stdout.write("migration check: schema and migrations agree\n");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
