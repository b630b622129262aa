import { hostname } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { hashPassword } from "./modules/auth/password.ts";
import { passwordProblem } from "./modules/auth/password-policy.ts";
import { billingReconcile } from "./modules/billing/reconcile.ts";
import { UsersRepo } from "./modules/users/users.repo.ts";
import { createDatabase, type Database } from "./platform/db/client.ts";
import { DataDirLockedError, dataDirLockOwner, LOCK_FILE, type LockOwner } from "./platform/db/data-dir-lock.ts";

/**
 * Operator commands: `npm run cli -- <command> [options]`.
 *   migrate                      apply pending SQL migrations
 *   create-admin --email <e>     create (or promote) a superuser; password prompted or read from stdin
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

On the embedded database (no DATABASE_URL) these commands refuse, with exit code 75, while the
server or another command has the same DATA_DIR open: stop the server first.
`;

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
    const out = rl as unknown as { _writeToOutput: (s: string) => void; output: NodeJS.WriteStream };
    let prompting = true;
    out._writeToOutput = (s: string) => {
      if (!prompting) out.output.write(s);
    };
    process.stdout.write("Password: ");
    const answer = await new Promise<string>((resolve) => rl.question("", resolve));
    prompting = false;
    process.stdout.write("\n");
    rl.close();
    return answer;
  }
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/** EX_TEMPFAIL: the embedded database is in use by another process; run again once it stops. */
const EXIT_DATA_DIR_LOCKED = 75;

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

async function withDatabase<T>(command: string, config: Config, fn: (db: Database) => Promise<T>): Promise<T> {
  let database: Database;
  try {
    database = await createDatabase({
      url: config.db.url,
      dataDir: config.dataDir,
      role: `cli ${command}`,
      poolMax: 2,
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

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "migrate": {
      const config = loadConfig();
      await withDatabase("migrate", config, async (db) => {
        await db.migrate();
        process.stdout.write(`migrations applied to ${db.description}\n`);
      });
      return 0;
    }
    case "create-admin": {
      const { values } = parseArgs({ args: rest, options: { email: { type: "string" } } });
      const email = values.email?.trim();
      if (email === undefined || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
        process.stderr.write("create-admin: --email <address> is required and must be an email address\n");
        return 2;
      }
      const config = loadConfig();
      refuseIfDataDirBusy("create-admin", config);
      const password = await readPassword();
      const problem = passwordProblem(password);
      if (problem !== undefined) {
        process.stderr.write(`create-admin: password ${problem}\n`);
        return 2;
      }
      const passwordHash = await hashPassword(password);
      return withDatabase("create-admin", config, async (db) => {
        await db.migrate();
        const repo = new UsersRepo(db.db);
        const existing = await repo.findByEmail(email);
        if (existing !== undefined) {
          await repo.setSuperuser(existing.id, passwordHash);
          process.stdout.write(`promoted ${existing.email} to superuser and set the new password\n`);
          return 0;
        }
        const created = await repo.createAccount({ email, passwordHash, isSuperuser: true, tier: "enterprise" });
        if (created === undefined) {
          process.stderr.write("create-admin: the email was taken concurrently; run again\n");
          return 1;
        }
        process.stdout.write(`created superuser ${created.user.email} (user ${created.user.id})\n`);
        return 0;
      });
    }
    case "billing-reconcile": {
      const { values } = parseArgs({
        args: rest,
        options: { "dry-run": { type: "boolean" }, customer: { type: "string" } },
      });
      const config = loadConfig();
      return withDatabase("billing-reconcile", config, (db) =>
        billingReconcile(
          config,
          db,
          { dryRun: values["dry-run"] === true, customerId: values.customer },
          process.stdout,
        ),
      );
    }
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof Refused) {
      process.stderr.write(err.message);
      process.exit(EXIT_DATA_DIR_LOCKED);
    }
    if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
