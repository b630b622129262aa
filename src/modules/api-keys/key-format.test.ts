import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { base58, generateKey, hashKey, isWellFormedKey } from "./key-format.ts";

describe("key format", () => {
  it("generates vla_live_ + base58 of 32 bytes with a 4-character display prefix", () => {
    const k = generateKey();
    expect(k.key).toMatch(/^vla_live_[1-9A-HJ-NP-Za-km-z]{43,44}$/);
    expect(k.displayPrefix).toBe(k.key.slice(0, 13));
    expect(k.hash).toBe(hashKey(k.key));
    expect(k.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(isWellFormedKey(k.key)).toBe(true);
    expect(generateKey("test").key.startsWith("vla_test_")).toBe(true);
  });

  it("never repeats", () => {
    const seen = new Set(Array.from({ length: 1000 }, () => generateKey().key));
    expect(seen.size).toBe(1000);
  });

  it("encodes base58 like the reference vectors", () => {
    expect(base58(Buffer.from("Hello World!"))).toBe("2NEpo7TZRRrLZSi2U");
    expect(base58(Buffer.from([0, 0, 1]))).toBe("112");
    expect(base58(new Uint8Array(32))).toBe("1".repeat(32));
  });

  it("accepts every 32-byte secret and rejects malformed keys", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        expect(isWellFormedKey(`vla_live_${base58(bytes)}`)).toBe(true);
      }),
    );
    for (const bad of [
      "",
      "vla_live_",
      `vla_live_0OIl${"1".repeat(40)}`,
      "sk-abc",
      `vla_prod_${"a".repeat(44)}`,
      `vla_live_${"a".repeat(45)}`,
    ]) {
      expect(isWellFormedKey(bad), bad).toBe(false);
    }
  });
});
