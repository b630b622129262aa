import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "./config.ts";
import { hashPassword } from "./modules/auth/password.ts";
import { passwordProblem } from "./modules/auth/password-policy.ts";
import { UsersRepo } from "./modules/users/users.repo.ts";
import { createDatabase, type Database } from "./platform/db/client.ts";

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

async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const database = await createDatabase({ url: config.db.url, dataDir: config.dataDir, poolMax: 2 });
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
      await withDatabase(async (db) => {
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
      const password = await readPassword();
      const problem = passwordProblem(password);
      if (problem !== undefined) {
        process.stderr.write(`create-admin: password ${problem}\n`);
        return 2;
      }
      const passwordHash = await hashPassword(password);
      return withDatabase(async (db) => {
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
    if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
