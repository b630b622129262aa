import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  acquireDataDirLock,
  DataDirLockedError,
  dataDirLockOwner,
  FOREIGN_STALE_MS,
  HEARTBEAT_MS,
  LOCK_FILE,
  type LockOwner,
} from "./data-dir-lock.ts";

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "vla-lock-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function writeLock(dir: string, owner: Partial<LockOwner>): void {
  const full = { hostname: hostname(), role: "server", since: "2026-01-01T00:00:00.000Z", nonce: "n0", ...owner };
  writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(full));
}

/** A pid that existed and has exited (and been reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  return r.pid as number;
}

function lockError(fn: () => unknown): DataDirLockedError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DataDirLockedError) return e;
    throw e;
  }
  throw new Error("expected DataDirLockedError");
}

describe("data dir lock", () => {
  it("is written with this pid on acquire and removed on release", () => {
    const dir = freshDir();
    const lock = acquireDataDirLock(dir, "server");
    const file = path.join(dir, LOCK_FILE);
    const content = JSON.parse(readFileSync(file, "utf8")) as LockOwner;
    expect(content).toMatchObject({ pid: process.pid, hostname: hostname(), role: "server" });
    lock.release();
    expect(existsSync(file)).toBe(false);
    lock.release(); // idempotent
    acquireDataDirLock(dir, "server").release();
  });

  it("refuses a second holder in the same process until the first releases", () => {
    const dir = freshDir();
    const first = acquireDataDirLock(dir, "server");
    const err = lockError(() => acquireDataDirLock(dir, "cli migrate"));
    expect(err.owner.role).toBe("server");
    expect(err.message).toContain(`DATA_DIR ${dir}`);
    expect(err.message).toContain("only one process may open it at a time");
    expect(dataDirLockOwner(dir)?.pid).toBe(process.pid);
    first.release();
    expect(dataDirLockOwner(dir)).toBeUndefined();
    acquireDataDirLock(dir, "cli migrate").release();
  });

  it("refuses while another live process holds it, and takes it over once that process is killed", async () => {
    const dir = freshDir();
    const modulePath = path.join(import.meta.dirname, "data-dir-lock.ts");
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { acquireDataDirLock } from ${JSON.stringify(modulePath)};
         acquireDataDirLock(${JSON.stringify(dir)}, "server");
         process.stdout.write("locked\\n");
         setInterval(() => {}, 60_000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          if (d.toString().includes("locked")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`child exited early (${code})`)));
      });
      const err = lockError(() => acquireDataDirLock(dir, "cli create-admin"));
      expect(err.owner.pid).toBe(child.pid);
      expect(err.message).toContain("in use by the server");
      expect(dataDirLockOwner(dir)?.pid).toBe(child.pid);
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL"); // a crash: no release, the lock file stays behind
      await exited;
    }
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(true);
    expect(dataDirLockOwner(dir)).toBeUndefined();
    const lock = acquireDataDirLock(dir, "server");
    expect(JSON.parse(readFileSync(lock.file, "utf8")).pid).toBe(process.pid);
    lock.release();
  });

  it("takes over a lock left by a dead pid", () => {
    const dir = freshDir();
    writeLock(dir, { pid: deadPid() });
    expect(dataDirLockOwner(dir)).toBeUndefined();
    const lock = acquireDataDirLock(dir, "server");
    expect(lock.owner.pid).toBe(process.pid);
    lock.release();
  });

  it("takes over a lock with this pid that this process does not hold (a restarted container's pid 1)", () => {
    const dir = freshDir();
    writeLock(dir, { pid: process.pid, nonce: "previous-incarnation" });
    acquireDataDirLock(dir, "server").release();
  });

  it.skipIf(!existsSync("/proc/self/stat"))(
    "takes over a lock whose pid is alive but was reused by another process",
    () => {
      const dir = freshDir();
      // The parent process is alive; a different start time means it is not the one that locked.
      writeLock(dir, { pid: process.ppid, startTicks: 1 });
      acquireDataDirLock(dir, "server").release();
    },
  );

  it("takes over an unreadable lock file", () => {
    const dir = freshDir();
    writeFileSync(path.join(dir, LOCK_FILE), "not json");
    acquireDataDirLock(dir, "server").release();
  });

  it("holds a lock from another host while it is touched, and takes it over once it is not", () => {
    const dir = freshDir();
    const file = path.join(dir, LOCK_FILE);
    writeLock(dir, { pid: deadPid(), hostname: "some-other-host.invalid" });
    const err = lockError(() => acquireDataDirLock(dir, "server"));
    expect(err.message).toContain("on host some-other-host.invalid");
    // Its holder stopped touching it (a recreated container, a dead writer on a shared volume).
    const old = new Date(Date.now() - FOREIGN_STALE_MS - 1_000);
    utimesSync(file, old, old);
    const lock = acquireDataDirLock(dir, "server");
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ pid: process.pid, hostname: hostname() });
    lock.release();
  });

  it("touches its lock file while held", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    try {
      const dir = freshDir();
      const lock = acquireDataDirLock(dir, "server");
      const old = new Date(Date.now() - FOREIGN_STALE_MS);
      utimesSync(lock.file, old, old);
      vi.advanceTimersByTime(HEARTBEAT_MS);
      expect(Date.now() - statSync(lock.file).mtimeMs).toBeLessThan(FOREIGN_STALE_MS / 2);
      lock.release();
    } finally {
      vi.useRealTimers();
    }
  });

  it("release leaves a lock that is no longer this process's", () => {
    const dir = freshDir();
    const lock = acquireDataDirLock(dir, "server");
    writeLock(dir, { pid: process.ppid, nonce: "someone-else" });
    lock.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(true);
  });
});
