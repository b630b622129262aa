import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

/**
 * The command-line tools the deployment tests run (promtool, kubectl, haproxy). `.ci/run`
 * installs the Debian packages that provide them. Where one is missing, the test that needs it is
 * skipped with a note on a developer machine, and fails (naming the package) when CI is set.
 */
export interface Tool {
  readonly name: string;
  /** Absolute path, or undefined when not installed. */
  readonly path: string | undefined;
  /** Skip the tests that need it: missing, and not in CI. */
  readonly skip: boolean;
  /** The path, or an error naming the Debian package to install. */
  require(): string;
}

export const repoRoot = path.resolve(import.meta.dirname, "../..");

function locate(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

export function tool(name: string, debianPackage: string): Tool {
  const found = locate(name);
  const ci = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  const hint = `${name} is not installed: apt-get install -y ${debianPackage} (Debian package "${debianPackage}"; .ci/run installs it)`;
  if (found === undefined && !ci) console.warn(`skipping the tests that need ${name}: ${hint}`);
  return {
    name,
    path: found,
    skip: found === undefined && !ci,
    require() {
      if (found === undefined) throw new Error(hint);
      return found;
    },
  };
}

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(bin: string, args: readonly string[], input?: string): RunResult {
  const r = spawnSync(bin, args, {
    cwd: repoRoot,
    input,
    encoding: "utf8",
    timeout: 30_000,
    maxBuffer: 64 * 1024 * 1024,
    // No kubeconfig, no cluster: every kubectl call here is local.
    env: { ...process.env, KUBECONFIG: path.join(repoRoot, "deploy/kubernetes/.no-kubeconfig") },
  });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Parses `{...}{...}` (kubectl's -o json for several objects): top-level JSON values back to back. */
export function parseConcatenatedJson(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  if (depth !== 0) throw new Error("unbalanced JSON in kubectl output");
  return out;
}

/** Every environment variable src/config.ts reads (r.int("NAME", ...), priceList("NAME"), ...). */
export function configEnvNames(source: string): string[] {
  const names = new Set<string>();
  for (const m of source.matchAll(
    /\b(?:(?:r|this)\.(?:raw|str|int|bool|oneOf|stringArray|optionalUrl|cidrs)|priceList)\(\s*"([A-Z][A-Z0-9_]*)"/g,
  )) {
    names.add(m[1] as string);
  }
  return [...names].sort();
}

/** Names in the first column of README's configuration table. */
export function readmeConfigNames(readme: string): string[] {
  const section = readme.split(/^## Configuration$/m)[1]?.split(/^## /m)[0] ?? "";
  return [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)`/gm)].map((m) => m[1] as string).sort();
}
