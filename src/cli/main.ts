import { rm } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { parseArgs } from "node:util";
import { eq } from "drizzle-orm";
import { buildApp } from "../app.ts";
import { type Config, ConfigError, loadConfig } from "../config.ts";
import { writeArchive } from "../modules/account-export/archive.ts";
import { customersCommand, keysCommand } from "../modules/admin/customers.cli.ts";
import { parseSuspensionArgs, runSuspension } from "../modules/admin/suspension.cli.ts";
import { RollupJob } from "../modules/analytics/rollup-job.ts";
import { RollupsRepo } from "../modules/analytics/rollups.repo.ts";
import { hashPassword } from "../modules/auth/password.ts";
import { passwordProblem } from "../modules/auth/password-policy.ts";
import { billingReconcile } from "../modules/billing/reconcile.ts";
import { RetentionJob } from "../modules/retention/retention.job.ts";
import { UsersRepo } from "../modules/users/users.repo.ts";
import { recordAudit } from "../platform/audit.ts";
import { createDatabase, type Database } from "../platform/db/client.ts";
import { DataDirLockedError, dataDirLockOwner, LOCK_FILE, type LockOwner } from "../platform/db/data-dir-lock.ts";
import { customers } from "../platform/db/schema/index.ts";
import { createObjectStore } from "../platform/object-store.ts";
import { Pseudonymizer } from "../platform/pseudonym.ts";

/**
 * Operator commands: `npm run cli -- <command> [options]`.
 *   migrate                      apply pending SQL migrations
 *   create-admin --email <e>     create (or promote) a superuser; password prompted or read from stdin
 *   analytics rebuild --from <day> --to <day>   recompute the analytics rollups of those UTC days
 *   retention [--dry-run]        run the retention job once
 *   customers list|show|tier     the admin customer routes at a shell
 *   keys create --customer <id>  a key for a customer, printed once
 *   customers suspend|unsuspend <id> [--reason <r>] [--json]   suspend or reinstate a customer
 */
const USAGE = `usage: npm run cli -- <command> [options]

commands:
  migrate                    apply pending database migrations
  create-admin --email <e>   create a superuser, or promote an existing user; the password is
                             prompted on a terminal or read from standard input
  billing-reconcile [--dry-run] [--customer <id>]
                             re-read every Stripe-linked customer's subscriptions from Stripe
                             and correct our copy (tier, status, price, period, grace) through
                             the webhook's code path; --dry-run only prints the differences
  analytics rebuild --from <YYYY-MM-DD> --to <YYYY-MM-DD>
                             recompute the analytics rollups of those UTC days (both
                             inclusive) from the raw inference logs and feedback
  retention [--dry-run]      delete what outlived each customer's consent retention_days
                             (docs/privacy.md); --dry-run only prints what it would delete
  export --customer <id> [--out <file.tar.gz>]
                             write the customer's account export (the archive of
                             POST /v1/account/export, docs/privacy.md) to a file
                             (default ./account-export-<id>-<day>.tar.gz, mode 0600)
  customers list [--q <text>] [--tier <t>] [--status active|suspended]
                 [--sort created_at|requests_30d|mrr] [--order desc|asc] [--limit <n>]
                 [--cursor <c> | --all] [--json]
                             customers as a table (newest or largest first), or JSON; a
                             page of --limit (default 50) and its next cursor, or --all pages
  customers show <customer_id> [--json]
                             one customer: limits, usage, subscription, members, keys
  customers tier <customer_id> <free|pro|enterprise> --reason <text> [--json]
                             change the tier (audited, actor cli); with REDIS_URL running
                             servers apply it within a second
  keys create --customer <customer_id> --name <name> [--scopes inference,admin] [--json]
                             create an API key for the customer (audited); the key is
                             printed once and never stored
  customers suspend <customer id> --reason <text> [--json]
                             suspend a customer: its keys, sessions and sign-in answer 403
                             customer_suspended, its streams close (docs/admin.md); audited
  customers unsuspend <customer id> [--reason <text>] [--json]
                             lift the suspension; audited

On the embedded database (no DATABASE_URL) these commands refuse, with exit code 75, while the
server or another command has the same DATA_DIR open: stop the server first.
`;

/**
 * What a run of the CLI reads and writes: `src/cli.ts` passes the process's own; tests pass
 * their own streams and environment and run commands in process.
 */
export interface CliIo {
  /** The arguments after the script name: `["customers", "list", "--json"]`. */
  readonly argv: readonly string[];
  /** The configuration is read from this (`process.env` also reads `.env`, see loadConfig). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: Readable & { readonly isTTY?: boolean };
  readonly stdout: Writable & { readonly isTTY?: boolean };
  readonly stderr: Writable & { readonly isTTY?: boolean };
}

async function readPassword(io: CliIo): Promise<string> {
  if (io.stdin.isTTY) {
    const rl = createInterface({ input: io.stdin, output: io.stdout, terminal: true });
    const out = rl as unknown as { _writeToOutput: (s: string) => void; output: NodeJS.WriteStream };
    let prompting = true;
    out._writeToOutput = (s: string) => {
      if (!prompting) out.output.write(s);
    };
    io.stdout.write("Password: ");
    const answer = await new Promise<string>((resolve) => rl.question("", resolve));
    prompting = false;
    io.stdout.write("\n");
    rl.close();
    return answer;
  }
  const chunks: Buffer[] = [];
  for await (const c of io.stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** EX_TEMPFAIL: the embedded database is in use by another process; run again once it stops. */
export const EXIT_DATA_DIR_LOCKED = 75;

/** The refusal printed when another process (usually the server) has the embedded database open. */
function lockedMessage(command: string, dataDir: string, owner: LockOwner, lockFile: string): string {
  const who = owner.role === "server" ? "the server" : `\`${owner.role}\``;
  const where = owner.hostname === hostname() ? `pid ${owner.pid}` : `pid ${owner.pid} on host ${owner.hostname}`;
  return [
    `${command}: ${who} is running on DATA_DIR ${dataDir} (${where}, since ${owner.since}).`,
    "The embedded database belongs to one process at a time: what a second process writes is lost.",
    owner.role === "server"
      ? "Stop the server, run this command, then start the server again; nothing was changed."
      : "Wait for it to finish and run this command again; nothing was changed.",
    ...(owner.hostname === hostname() ? [] : [`If ${owner.hostname} no longer runs it, delete ${lockFile}.`]),
    "",
  ].join("\n");
}

/** A refusal to print as is (no "error:" prefix), with exit code EXIT_DATA_DIR_LOCKED. */
class Refused extends Error {}

/** Refuses before any prompt when a live process holds DATA_DIR (the open below still decides). */
function refuseIfDataDirBusy(command: string, config: Config): void {
  if (config.db.url !== undefined) return; // PostgreSQL: the CLI runs alongside the server
  const owner = dataDirLockOwner(config.dataDir);
  if (owner !== undefined) {
    throw new Refused(lockedMessage(command, config.dataDir, owner, path.join(config.dataDir, LOCK_FILE)));
  }
}

async function withDatabase<T>(
  command: string,
  config: Config,
  fn: (db: Database) => Promise<T>,
  statementTimeoutMs?: number,
): Promise<T> {
  let database: Database;
  try {
    database = await createDatabase({
      url: config.db.url,
      dataDir: config.dataDir,
      role: `cli ${command}`,
      poolMax: 2,
      ...(statementTimeoutMs === undefined ? {} : { statementTimeoutMs }),
    });
  } catch (e) {
    if (e instanceof DataDirLockedError) throw new Refused(lockedMessage(command, e.dataDir, e.owner, e.lockFile));
    throw e;
  }
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}

const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

/** A progress bar on a terminal (redrawn in place), else a line per tenth. */
function progressBar(stderr: CliIo["stderr"], label: string, unit = "days"): (done: number, total: number) => void {
  let lastTenth = -1;
  return (done, total) => {
    const frac = total === 0 ? 1 : done / total;
    if (stderr.isTTY) {
      const width = 30;
      const full = Math.round(frac * width);
      stderr.write(`\r${label} [${"#".repeat(full)}${".".repeat(width - full)}] ${done}/${total} ${unit}`);
      if (done === total) stderr.write("\n");
      return;
    }
    const tenth = Math.floor(frac * 10);
    if (tenth !== lastTenth) {
      lastTenth = tenth;
      stderr.write(`${label}: ${done}/${total} ${unit} (${Math.round(frac * 100)} %)\n`);
    }
  };
}

async function analyticsCommand(rest: string[], io: CliIo): Promise<number> {
  const [sub, ...args] = rest;
  if (sub !== "rebuild") {
    io.stderr.write(`analytics: unknown subcommand ${sub ?? "(none)"}\n\n${USAGE}`);
    return 2;
  }
  const { values } = parseArgs({ args, options: { from: { type: "string" }, to: { type: "string" } } });
  const from = values.from ?? "";
  const to = values.to ?? "";
  const fromMs = Date.parse(`${from}T00:00:00Z`);
  const toMs = Date.parse(`${to}T00:00:00Z`);
  if (!DAY_RE.test(from) || !DAY_RE.test(to) || Number.isNaN(fromMs) || Number.isNaN(toMs) || toMs < fromMs) {
    io.stderr.write("analytics rebuild: --from and --to are UTC days (YYYY-MM-DD), from <= to\n");
    return 2;
  }
  if (toMs - fromMs > 3_660 * 86_400_000) {
    io.stderr.write("analytics rebuild: at most ten years at a time\n");
    return 2;
  }
  const config = loadConfig(io.env);
  return withDatabase(
    "analytics rebuild",
    config,
    async (db) => {
      await db.migrate();
      const job = new RollupJob({ db: db.db, repo: new RollupsRepo(new Pseudonymizer(config.auth.secretKey)) });
      // Count what has arrived first: the rebuild recomputes exactly the rows the job has counted.
      await job.catchUp(Number.MAX_SAFE_INTEGER);
      const started = Date.now();
      const r = await job.rebuild(new Date(fromMs), new Date(toMs + 86_400_000), progressBar(io.stderr, "rebuilding"));
      if (!r.ran) {
        io.stderr.write("analytics rebuild: the analytics job is running in another process; try again\n");
        return 1;
      }
      io.stdout.write(
        `rebuilt analytics for ${from} .. ${to}: ${r.logs} inference rows, ${r.feedback} feedback rows in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
      );
      return 0;
      // An operator command reading whole days: no per-statement timeout (0 = none).
    },
    0,
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `export --customer <id> [--out <file>]`: the same archive as the API's export job. The app is
 * built (without its background jobs) for its section registry, so every module's section is in.
 */
async function exportCommand(rest: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { customer: { type: "string" }, out: { type: "string" } } });
  const customerId = values.customer ?? "";
  if (!UUID.test(customerId)) {
    io.stderr.write("export: --customer <customer id (uuid)> is required\n");
    return 2;
  }
  const loaded = loadConfig(io.env);
  // An operator command: no model warm-up, no per-statement timeout on the long reads.
  const config: Config = {
    ...loaded,
    models: { ...loaded.models, warmUp: false },
    log: { ...loaded.log, level: "warn" },
  };
  const out = path.resolve(
    values.out ?? `account-export-${customerId}-${new Date().toISOString().slice(0, 10)}.tar.gz`,
  );
  refuseIfDataDirBusy("export", config);
  return withDatabase(
    "export",
    config,
    async (database) => {
      await database.migrate();
      const found = await database.db.select({ id: customers.id }).from(customers).where(eq(customers.id, customerId));
      if (found.length === 0) {
        io.stderr.write(`export: no customer ${customerId}\n`);
        return 1;
      }
      const app = await buildApp(config, {
        database,
        migrate: false,
        backgroundJobs: false,
        // The app logs to the process's stdout; a run in process (tests) keeps them in its own.
        ...(io.stdout === process.stdout ? {} : { logStream: io.stdout }),
      });
      try {
        const started = Date.now();
        let last = started;
        const result = await writeArchive({
          customerId,
          sections: app.platform.exports.sections,
          db: database.db,
          outFile: out,
          stagePrefix: path.join(path.dirname(out), `.${path.basename(out)}.stage-`),
          now: Date.now,
          progressEvery: config.exports.batchRows,
          onProgress: (progress) => {
            if (Date.now() - last < 1_000) return;
            last = Date.now();
            const rows = Object.values(progress).reduce((a, b) => a + b, 0);
            io.stderr.write(`export: ${rows} rows written\n`);
          },
        });
        const lines = Object.entries(result.progress).map(([name, n]) => `  ${name}: ${n}`);
        io.stdout.write(
          `wrote ${out} (${result.sizeBytes} bytes) in ${((Date.now() - started) / 1000).toFixed(1)} s\n${lines.join("\n")}\n`,
        );
        return 0;
      } catch (e) {
        await rm(out, { force: true });
        throw e;
      } finally {
        await app.close();
      }
    },
    0,
  );
}

async function retentionCommand(rest: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { "dry-run": { type: "boolean" } } });
  const dryRun = values["dry-run"] === true;
  const config = loadConfig(io.env);
  return withDatabase(
    "retention",
    config,
    async (database) => {
      await database.migrate();
      const objectStore = createObjectStore(config.objectStore);
      const job = new RetentionJob({
        database,
        now: Date.now,
        defaultTier: config.consent.defaultTier,
        batchSize: config.retention.batchSize,
        objectStore,
      });
      const r = await job
        .run({ dryRun, onProgress: progressBar(io.stderr, dryRun ? "counting" : "deleting", "customers") })
        .finally(() => objectStore.close?.());
      if (!r.ran) {
        io.stderr.write("retention: the retention job is running in another process; try again\n");
        return 1;
      }
      const verb = dryRun ? "would delete" : "deleted";
      const out = [`retention${dryRun ? " (dry run)" : ""}: ${r.customers} customers`];
      for (const [table, n] of Object.entries(r.rows)) out.push(`  ${table}: ${verb} ${n} rows`);
      out.push(
        `  instruction_analytics: ${dryRun ? "would clear" : "cleared"} the instruction text of ${r.instructionTextsCleared} rows`,
      );
      for (const p of r.partitions) out.push(`  inference_logs: ${dryRun ? "would drop" : "dropped"} partition ${p}`);
      out.push(`  context_metadata: ${verb} ${r.contextRows} rows`);
      out.push(
        dryRun
          ? `  images: would clear the image key of ${r.imageKeysCleared} rows whose consent no longer allows images`
          : `  images: deleted ${r.imagesDeleted} stored images; cleared the image key of ${r.imageKeysCleared} rows`,
      );
      out.push(`  stripe_events: ${verb} ${r.stripeEvents} rows (webhook deduplication records)`);
      out.push(`in ${(r.durationMs / 1000).toFixed(1)} s`);
      io.stdout.write(`${out.join("\n")}\n`);
      return 0;
      // The dry run counts a customer's whole backlog in one statement: no per-statement timeout (0 = none).
    },
    0,
  );
}

/** `customers suspend|unsuspend <id>`: the API's service, audited with `details.source: "cli"`. */
async function suspensionCommand(action: "suspend" | "unsuspend", args: string[], io: CliIo): Promise<number> {
  const parsed = parseSuspensionArgs(action, args);
  if (typeof parsed === "string") {
    io.stderr.write(`customers ${action}: ${parsed}\n`);
    return 2;
  }
  const config = loadConfig(io.env);
  return withDatabase(`customers ${action}`, config, async (db) => {
    await db.migrate();
    return runSuspension(config, db, parsed, io.stdout, io.stderr);
  });
}

async function run(io: CliIo): Promise<number> {
  const [command, ...rest] = io.argv;
  switch (command) {
    case "migrate": {
      const config = loadConfig(io.env);
      await withDatabase("migrate", config, async (db) => {
        await db.migrate();
        io.stdout.write(`migrations applied to ${db.description}\n`);
      });
      return 0;
    }
    case "create-admin": {
      const { values } = parseArgs({ args: rest, options: { email: { type: "string" } } });
      const email = values.email?.trim();
      if (email === undefined || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
        io.stderr.write("create-admin: --email <address> is required and must be an email address\n");
        return 2;
      }
      const config = loadConfig(io.env);
      refuseIfDataDirBusy("create-admin", config);
      const password = await readPassword(io);
      const problem = passwordProblem(password);
      if (problem !== undefined) {
        io.stderr.write(`create-admin: password ${problem}\n`);
        return 2;
      }
      const passwordHash = await hashPassword(password);
      return withDatabase("create-admin", config, async (db) => {
        await db.migrate();
        const repo = new UsersRepo(db.db);
        const existing = await repo.findByEmail(email);
        if (existing !== undefined) {
          await repo.setSuperuser(existing.id, passwordHash);
          await recordAudit(db.db, {
            action: "user.superuser_grant",
            targetType: "user",
            targetId: existing.id,
            customerId: existing.customerId,
            details: { source: "cli", created: false },
          });
          io.stdout.write(`promoted ${existing.email} to superuser and set the new password\n`);
          return 0;
        }
        const created = await repo.createAccount({ email, passwordHash, isSuperuser: true, tier: "enterprise" });
        if (created === undefined) {
          io.stderr.write("create-admin: the email was taken concurrently; run again\n");
          return 1;
        }
        await recordAudit(db.db, {
          action: "user.superuser_grant",
          targetType: "user",
          targetId: created.user.id,
          customerId: created.customer.id,
          details: { source: "cli", created: true },
        });
        io.stdout.write(`created superuser ${created.user.email} (user ${created.user.id})\n`);
        return 0;
      });
    }
    case "billing-reconcile": {
      const { values } = parseArgs({
        args: rest,
        options: { "dry-run": { type: "boolean" }, customer: { type: "string" } },
      });
      const config = loadConfig(io.env);
      return withDatabase("billing-reconcile", config, (db) =>
        billingReconcile(config, db, { dryRun: values["dry-run"] === true, customerId: values.customer }, io.stdout),
      );
    }
    case "analytics":
      return analyticsCommand(rest, io);
    case "retention":
      return retentionCommand(rest, io);
    case "export":
      return exportCommand(rest, io);
    case "customers":
    case "keys": {
      if (command === "customers" && (rest[0] === "suspend" || rest[0] === "unsuspend")) {
        return suspensionCommand(rest[0], rest.slice(1), io);
      }
      const config = loadConfig(io.env);
      const cliIo = { out: (t: string) => io.stdout.write(t), err: (t: string) => io.stderr.write(t) };
      const cmd = command === "customers" ? customersCommand : keysCommand;
      return withDatabase(command, config, (db) => cmd(rest, config, db, cliIo));
    }
    case undefined:
    case "help":
    case "--help":
      io.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      io.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

/**
 * Runs one CLI command and resolves to its exit code; never rejects. Everything it opens (the
 * database and its DATA_DIR lock, Redis, the object store) is closed before it resolves, so it
 * can run many times in one process (the tests do).
 */
export async function main(io: CliIo): Promise<number> {
  try {
    return await run(io);
  } catch (err) {
    if (err instanceof Refused) {
      io.stderr.write(err.message);
      return EXIT_DATA_DIR_LOCKED;
    }
    if (err instanceof ConfigError) io.stderr.write(`${err.message}\n`);
    else io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
