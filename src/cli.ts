import { main } from "./cli/main.ts";

/**
 * Operator commands: `npm run cli -- <command> [options]` (usage: `npm run cli -- help`).
 * The commands are in cli/main.ts; this entry point gives them the process's arguments,
 * environment and standard streams, and exits with the command's exit code.
 */
const code = await main({
  argv: process.argv.slice(2),
  env: process.env,
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
});
process.exit(code);
