import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { main } from "../../src/cli/main.ts";
import { createDatabase, type Database } from "../../src/platform/db/client.ts";

/**
 * The operator CLI (src/cli.ts) in tests. `runCli` runs a command in this process through
 * `main(io)` (what the entry point runs, without starting a Node process per command);
 * `spawnCli` runs the real entry point as a process, for the few tests of the process itself
 * (exit codes as the shell sees them).
 */

const root = path.resolve(import.meta.dirname, "../..");

export interface CliResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** DATA_DIR of the embedded database. */
  readonly dataDir: string;
  /** Standard input (create-admin reads the password from it); empty by default. */
  readonly input?: string;
  /** Variables set on top of the defaults (e.g. DATABASE_URL, REDIS_URL, LOG_LEVEL). */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * The environment a command runs with: this process's, on the embedded database in `dataDir`
 * (DATABASE_URL and REDIS_URL removed, NODE_ENV development as an operator's shell), plus `extra`.
 */
export function cliEnv(
  dataDir: string,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, DATA_DIR: dataDir, NODE_ENV: "development" };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  return { ...env, ...extra };
}

/** A writable that keeps what is written, as text. */
class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    callback();
  }
}

/** Runs `npm run cli -- ...args` in this process; resolves to its exit code and output. */
export async function runCli(args: readonly string[], options: CliOptions): Promise<CliResult> {
  const stdout = new Capture({ decodeStrings: false });
  const stderr = new Capture({ decodeStrings: false });
  const input = options.input ?? "";
  const status = await main({
    argv: [...args],
    env: cliEnv(options.dataDir, options.env),
    stdin: Readable.from(input === "" ? [] : [Buffer.from(input)]),
    stdout,
    stderr,
  });
  return { status, stdout: stdout.text, stderr: stderr.text };
}

/** Runs `node <script> ...args` as a process (cwd `dataDir`), as an operator's shell would. */
export function spawnScript(
  script: string,
  args: readonly string[],
  options: CliOptions & { readonly timeoutMs?: number },
): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [path.join(root, script), ...args], {
    cwd: options.dataDir,
    input: options.input ?? "",
    encoding: "utf8",
    env: cliEnv(options.dataDir, options.env),
    timeout: options.timeoutMs ?? 60_000,
  });
}

/** Runs `node src/cli.ts ...args` as a process. */
export function spawnCli(args: readonly string[], options: CliOptions): SpawnSyncReturns<string> {
  return spawnScript("src/cli.ts", args, options);
}

/** Opens DATA_DIR's embedded database for `fn` (as the CLI would; the CLI cannot run meanwhile). */
export async function withDataDir<T>(dataDir: string, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await createDatabase({ dataDir });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
