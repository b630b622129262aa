import { type Algorithm, hash, verify } from "@node-rs/argon2";
import bcrypt from "bcryptjs";

/**
 * Argon2id with the OWASP minimum (m = 19 MiB, t = 2, p = 1). @node-rs/argon2 runs on the
 * libuv thread pool, so hashing never blocks the event loop.
 */
const ARGON2_OPTIONS = { algorithm: 2 as Algorithm.Argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

export interface VerifyResult {
  readonly ok: boolean;
  /** True when the stored hash is legacy (bcrypt) or weaker than today's parameters. */
  readonly needsRehash: boolean;
}

const BCRYPT_PREFIX = /^\$2[aby]\$/;

/** Verifies against Argon2id or a legacy bcrypt hash (systems migrating to us bring those). */
export async function verifyPassword(stored: string, password: string): Promise<VerifyResult> {
  if (BCRYPT_PREFIX.test(stored)) {
    const ok = await bcrypt.compare(password, stored);
    return { ok, needsRehash: ok };
  }
  if (!stored.startsWith("$argon2")) return { ok: false, needsRehash: false };
  try {
    const ok = await verify(stored, password);
    const current = stored.startsWith(
      `$argon2id$v=19$m=${ARGON2_OPTIONS.memoryCost},t=${ARGON2_OPTIONS.timeCost},p=${ARGON2_OPTIONS.parallelism}$`,
    );
    return { ok, needsRehash: ok && !current };
  } catch {
    return { ok: false, needsRehash: false };
  }
}

let dummy: Promise<string> | undefined;
/**
 * Verifying against a fixed dummy hash when the account does not exist makes "no such user"
 * cost the same time as "wrong password" (login enumeration defence).
 */
export async function burnVerifyTime(password: string): Promise<void> {
  dummy ??= hashPassword("dummy-password-for-timing-equalisation");
  await verify(await dummy, password).catch(() => false);
}
