import { randomBytes } from "node:crypto";
import { linkSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";

/**
 * An exclusive lock on a DATA_DIR, held by whichever process opens the embedded database there.
 * PGlite is one process's database: a second process writing the same files is silently lost
 * (or corrupts the first one's), so a second opener must refuse instead.
 *
 * The lock is the file `<DATA_DIR>/pgdata.lock` holding the owner's pid, host, process start
 * and a per-acquisition nonce. It appears atomically with its full content (written to a
 * temporary file, then hard-linked into place, which fails if the name exists). A lock whose
 * process is gone (crash, SIGKILL, power loss) is stale and taken over: liveness is
 * `process.kill(pid, 0)` on the same host plus, where /proc exists, the pid's start time, so a
 * pid reused by an unrelated process (a restarted container's pid 1) does not hold it either.
 * A lock from another host cannot be checked by pid: its holder touches the file every
 * HEARTBEAT_MS, and one not touched for FOREIGN_STALE_MS is stale. That covers a recreated
 * container (new hostname, same volume) as well as a shared volume whose writer died.
 */
export const LOCK_FILE = "pgdata.lock";
export const HEARTBEAT_MS = 10_000;
export const FOREIGN_STALE_MS = 60_000;

export interface LockOwner {
  readonly pid: number;
  readonly hostname: string;
  /** What holds it: "server", "cli migrate", ... */
  readonly role: string;
  /** ISO time the lock was taken. */
  readonly since: string;
  /** The pid's start time in clock ticks since boot (Linux /proc), to tell a reused pid. */
  readonly startTicks?: number | undefined;
  readonly nonce: string;
}

export class DataDirLockedError extends Error {
  readonly dataDir: string;
  readonly owner: LockOwner;
  readonly lockFile: string;
  constructor(dataDir: string, owner: LockOwner, lockFile: string) {
    const where = owner.hostname === hostname() ? `pid ${owner.pid}` : `pid ${owner.pid} on host ${owner.hostname}`;
    const who = owner.pid === process.pid && owner.hostname === hostname() ? "this process" : `the ${owner.role}`;
    super(
      `the embedded database in DATA_DIR ${dataDir} is in use by ${who} (${where}, since ${owner.since}); ` +
        "only one process may open it at a time" +
        (owner.hostname === hostname()
          ? ""
          : `; it counts as held while touched within the last ${FOREIGN_STALE_MS / 1000} s`),
    );
    this.name = "DataDirLockedError";
    this.dataDir = dataDir;
    this.owner = owner;
    this.lockFile = lockFile;
  }
}

export interface DataDirLock {
  readonly file: string;
  readonly owner: LockOwner;
  /** Removes the lock file if it is still ours; idempotent. */
  release(): void;
}

/** Lock files this process holds, so a second open in the same process refuses too. */
const held = new Set<string>();

/** Start time of `pid` in clock ticks since boot, from /proc (Linux); undefined elsewhere. */
function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is parenthesised and may contain spaces: split after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]); // field 22 of the whole line
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

function parse(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid !== "number" || typeof o.hostname !== "string" || typeof o.nonce !== "string") return undefined;
    return {
      pid: o.pid,
      hostname: o.hostname,
      role: typeof o.role === "string" ? o.role : "process",
      since: typeof o.since === "string" ? o.since : "an unknown time",
      startTicks: typeof o.startTicks === "number" ? o.startTicks : undefined,
      nonce: o.nonce,
    };
  } catch {
    return undefined;
  }
}

function readOwner(file: string): { text: string; owner: LockOwner | undefined } | undefined {
  try {
    const text = readFileSync(file, "utf8");
    return { text, owner: parse(text) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Whether the process that wrote `owner` may still be running. */
function isAlive(owner: LockOwner, file: string): boolean {
  if (owner.hostname !== hostname()) {
    // No pid to check on another host: alive while its holder keeps touching the file.
    try {
      return Date.now() - statSync(file).mtimeMs < FOREIGN_STALE_MS;
    } catch {
      return false;
    }
  }
  if (owner.pid === process.pid) return held.has(file); // ours, or a previous process that had our pid
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false; // EPERM: exists, another user's
  }
  const now = startTicks(owner.pid);
  return owner.startTicks === undefined || now === undefined || now === owner.startTicks;
}

/**
 * The live owner of DATA_DIR's lock, or undefined when it is free or stale. A read-only check
 * (the CLI asks before prompting for a password); only `acquireDataDirLock` is authoritative.
 */
export function dataDirLockOwner(dataDir: string): LockOwner | undefined {
  const file = path.resolve(dataDir, LOCK_FILE);
  const found = readOwner(file);
  if (found?.owner === undefined) return undefined;
  return isAlive(found.owner, file) ? found.owner : undefined;
}

/**
 * Takes DATA_DIR's lock for this process or throws DataDirLockedError naming the holder.
 * The directory must exist.
 */
export function acquireDataDirLock(dataDir: string, role: string): DataDirLock {
  const file = path.resolve(dataDir, LOCK_FILE);
  const owner: LockOwner = {
    pid: process.pid,
    hostname: hostname(),
    role,
    since: new Date().toISOString(),
    startTicks: startTicks(process.pid),
    nonce: randomBytes(12).toString("hex"),
  };
  const temp = `${file}.${process.pid}.${owner.nonce}`;
  writeFileSync(temp, `${JSON.stringify(owner)}\n`, { flag: "wx" });
  try {
    // Bounded: each round either takes the lock, refuses, or removes one stale lock.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(temp, file);
        held.add(file);
        return lockHandle(file, owner);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const found = readOwner(file);
      if (found === undefined) continue; // released meanwhile
      if (found.owner !== undefined && isAlive(found.owner, file)) {
        throw new DataDirLockedError(dataDir, found.owner, file);
      }
      removeStale(file, found.text);
    }
    throw new Error(`could not take the lock ${file}: it keeps changing; is another process starting?`);
  } finally {
    unlinkSync(temp);
  }
}

/**
 * Removes a stale lock file, but only the one judged stale: it is renamed aside first (atomic)
 * and its content compared, so a lock another process took meanwhile is put back (link fails
 * if a third one took the name in the same instant; that race needs three starters at once).
 */
function removeStale(file: string, staleText: string): void {
  const aside = `${file}.stale.${process.pid}.${randomBytes(6).toString("hex")}`;
  try {
    renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  try {
    if (readFileSync(aside, "utf8") !== staleText) {
      try {
        linkSync(aside, file);
      } catch {
        // Someone else holds the name now; their lock stands.
      }
    }
  } finally {
    unlinkSync(aside);
  }
}

function lockHandle(file: string, owner: LockOwner): DataDirLock {
  let released = false;
  // Keeps the lock fresh for processes on other hosts (or containers) that cannot see our pid.
  const heartbeat = setInterval(() => {
    try {
      const t = new Date();
      utimesSync(file, t, t);
    } catch {
      // Gone or unwritable: the next opener decides by pid or age, as for any crash.
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    held.delete(file);
    process.off("exit", release);
    // Never remove a lock that is no longer ours (taken over while this process hung, say).
    // Best effort: a lock left behind names this pid, which is stale once this process ends
    // and is not held (`held`) by it meanwhile, so it never blocks anyone for good.
    try {
      if (readOwner(file)?.owner?.nonce === owner.nonce) unlinkSync(file);
    } catch {
      // see above
    }
  };
  // A process that exits without closing the database (process.exit on a shutdown deadline)
  // leaves no lock behind; a crash leaves a stale one, which the next opener takes over.
  process.on("exit", release);
  return { file, owner, release };
}
