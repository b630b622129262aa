import { createHmac, hash } from "node:crypto";

/** `anon_` + 32 hex digits: a pseudonymized robot id. */
export const ROBOT_PSEUDONYM = /^anon_[0-9a-f]{32}$/;
/** A pseudonymized API key id: a version-8 (custom) UUID; real key ids are version 4. */
export const KEY_PSEUDONYM = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Keyed pseudonyms for analytics (docs/privacy.md, "Anonymization"): HMAC-SHA256 under a key
 * derived from SECRET_KEY (HMAC(SECRET_KEY, "analytics-pseudonym/v1")), over the customer id and
 * the identifier, truncated to 128 bits. Stable for a given SECRET_KEY, different per customer (the
 * same robot name of two customers gives two pseudonyms), and not reversible without the key.
 * Idempotent: a pseudonym maps to itself, so a value pseudonymized when its row was written passes
 * the rollup job unchanged.
 */
export class Pseudonymizer {
  private readonly inner: Buffer;
  private readonly outer: Buffer;

  constructor(secretKey: string) {
    const key = createHmac("sha256", secretKey).update("analytics-pseudonym/v1").digest();
    // HMAC (RFC 2104) over the one-shot hash(): createHmac costs about 20 us per call on Node 24
    // (OpenSSL 3 fetches the algorithm each time), two one-shot hashes about 1 us. The 32-byte key
    // is shorter than SHA-256's 64-byte block, so it is only zero-padded.
    const block = Buffer.alloc(64);
    key.copy(block);
    this.inner = Buffer.from(block.map((b) => b ^ 0x36));
    this.outer = Buffer.from(block.map((b) => b ^ 0x5c));
  }

  /** HMAC-SHA256(key, kind NUL customerId NUL id); equal to createHmac's (pseudonym.test.ts). */
  mac(kind: string, customerId: string, id: string): Buffer {
    const message = Buffer.from(`${kind}\u0000${customerId}\u0000${id}`, "utf8");
    const inner = hash("sha256", Buffer.concat([this.inner, message]), "buffer");
    return hash("sha256", Buffer.concat([this.outer, inner]), "buffer");
  }

  /**
   * Recent pseudonyms: the same few robots and keys of a customer repeat on every request (a
   * lookup is about 0.1 us, the two hashes several). Cleared when full, so memory stays bounded.
   */
  private readonly recent = new Map<string, string>();

  private cached(kind: string, customerId: string, id: string, make: () => string): string {
    const k = `${kind}\u0000${customerId}\u0000${id}`;
    let v = this.recent.get(k);
    if (v === undefined) {
      v = make();
      if (this.recent.size >= 10_000) this.recent.clear();
      this.recent.set(k, v);
    }
    return v;
  }

  /** `anon_<32 hex>`; null stays null. */
  robot(customerId: string, robotId: string | null): string | null {
    if (robotId === null || ROBOT_PSEUDONYM.test(robotId)) return robotId;
    return this.cached(
      "robot",
      customerId,
      robotId,
      () => `anon_${this.mac("robot", customerId, robotId).subarray(0, 16).toString("hex")}`,
    );
  }

  /** A version-8 UUID (it fits the uuid columns); null stays null. */
  apiKey(customerId: string, apiKeyId: string | null): string | null {
    if (apiKeyId === null || KEY_PSEUDONYM.test(apiKeyId)) return apiKeyId;
    return this.cached("api_key", customerId, apiKeyId, () => {
      const b = this.mac("api_key", customerId, apiKeyId.toLowerCase()).subarray(0, 16);
      b[6] = ((b[6] as number) & 0x0f) | 0x80;
      b[8] = ((b[8] as number) & 0x3f) | 0x80;
      const h = b.toString("hex");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    });
  }
}
