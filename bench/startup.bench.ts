/**
 * Startup time and idle memory of `npm start` on embedded defaults.
 * Starts the server as `npm start` would (node src/server.ts) on 127.0.0.1 with a fresh DATA_DIR,
 * measures the time until GET /health answers 200, then the resident set size after 5 s idle.
 * A second start on the same DATA_DIR measures a warm start (database exists, no migrations).
 *
 *   npx node bench/startup.bench.ts
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const root = path.resolve(import.meta.dirname, "..");
const port = 18_000 + Math.floor(Math.random() * 1000);

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

async function run(dataDir: string, label: string): Promise<{ label: string; ready_ms: number; idle_rss_mib: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(root, "src/server.ts")], {
    cwd: root,
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "warn",
      NODE_ENV: "development",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    let ready = -1;
    while (ready < 0 && performance.now() - started < 60_000) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/health`);
        if (r.status === 200) ready = performance.now() - started;
      } catch {
        // not listening yet
      }
      if (ready < 0) await sleep(20);
    }
    if (ready < 0) throw new Error("server did not become ready within 60 s");
    await sleep(5_000);
    return { label, ready_ms: Math.round(ready), idle_rss_mib: rssMiB(child.pid as number) };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

const dataDir = mkdtempSync(path.join(tmpdir(), "vla-bench-start-"));
try {
  const cold = await run(dataDir, "first start (creates database, applies migrations)");
  const warm = await run(dataDir, "second start (existing database)");
  console.table([cold, warm]);
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
