import { hash, randomBytes } from "node:crypto";

/**
 * Key format: `vla_live_` (or `vla_test_`, reserved for test-mode keys) followed by the
 * base58 (Bitcoin alphabet: no 0/O/I/l) encoding of 32 random bytes, i.e. 256 bits.
 * Only the SHA-256 of the whole key is stored: a high-entropy secret needs a fast hash, not
 * a password hash.
 */
export const LIVE_PREFIX = "vla_live_";
export const TEST_PREFIX = "vla_test_";
export const SECRET_BYTES = 32;

const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
// 32 bytes encode to at most 44 base58 characters; leading zero bytes become "1"s.
const KEY_PATTERN = /^vla_(live|test)_[1-9A-HJ-NP-Za-km-z]{32,44}$/;

export function base58(bytes: Uint8Array): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
  return out;
}

export function hashKey(key: string): string {
  // One-shot hash: a third of createHash().update().digest() for a key-sized input (every
  // authenticated request hashes its key once).
  return hash("sha256", key, "hex");
}

export interface GeneratedKey {
  /** The plaintext, shown once. */
  readonly key: string;
  readonly hash: string;
  readonly displayPrefix: string;
}

export function generateKey(mode: "live" | "test" = "live"): GeneratedKey {
  const prefix = mode === "live" ? LIVE_PREFIX : TEST_PREFIX;
  const key = prefix + base58(randomBytes(SECRET_BYTES));
  return { key, hash: hashKey(key), displayPrefix: key.slice(0, prefix.length + 4) };
}

/** True for a syntactically valid key; says nothing about whether it exists. */
export function isWellFormedKey(key: string): boolean {
  return key.length <= 60 && KEY_PATTERN.test(key);
}
