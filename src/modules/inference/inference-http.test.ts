import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { decodeBase64Image } from "./inference-http.ts";

/** The rules as written before the fast path (regex validation), kept as the reference. */
function reference(value: string, maxBytes: number): Uint8Array {
  const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
  const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
  let s = value;
  if (s.startsWith("data:")) {
    const comma = s.indexOf(",");
    if (comma < 0 || !s.slice(0, comma).endsWith(";base64")) throw new AppError("invalid_image");
    s = s.slice(comma + 1);
  }
  if (/\s/.test(s)) s = s.replace(/\s+/g, "");
  if (Math.floor((s.length * 3) / 4) > maxBytes + 2) throw new AppError("invalid_image");
  if (!(BASE64.test(s) || BASE64URL.test(s)) || s.length % 4 === 1) throw new AppError("invalid_image");
  const bytes = Buffer.from(s, BASE64.test(s) ? "base64" : "base64url");
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function outcome(f: () => Uint8Array): string {
  try {
    return `ok:${Buffer.from(f()).toString("hex")}`;
  } catch (e) {
    return e instanceof AppError ? `error:${e.code}` : `other:${String(e)}`;
  }
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \n\t.%";

/** Encodings of random bytes, then mutated: padding dropped or added, whitespace, stray characters. */
const candidate = fc
  .tuple(
    fc.uint8Array({ maxLength: 64 }),
    fc.constantFrom("base64", "base64url"),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom(...ALPHABET.split("")), fc.boolean()), { maxLength: 3 }),
    fc.constantFrom("", "=", "==", "==="),
    fc.boolean(),
  )
  .map(([bytes, enc, edits, pad, dataUrl]) => {
    let s =
      Buffer.from(bytes)
        .toString(enc as BufferEncoding)
        .replace(/=+$/, "") + pad;
    for (const [at, ch, insert] of edits) {
      const i = s.length === 0 ? 0 : at % s.length;
      s = insert ? s.slice(0, i) + ch + s.slice(i) : s.slice(0, i) + ch + s.slice(i + 1);
    }
    return dataUrl ? `data:image/jpeg;base64,${s}` : s;
  });

describe("decodeBase64Image", () => {
  it("decides exactly like the regex rules, bytes included (property)", () => {
    fc.assert(
      fc.property(candidate, fc.integer({ min: 0, max: 80 }), (s, maxBytes) => {
        expect(outcome(() => decodeBase64Image(s, maxBytes))).toBe(outcome(() => reference(s, maxBytes)));
      }),
      { numRuns: 5000 },
    );
  });

  it("decodes the usual forms and refuses the broken ones", () => {
    const bytes = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0xfb]);
    for (const s of [
      bytes.toString("base64"),
      bytes.toString("base64").replace(/=+$/, ""),
      bytes.toString("base64url"),
      `data:image/jpeg;base64,${bytes.toString("base64")}`,
      bytes.toString("base64").replace(/(.{4})/g, "$1\n"),
    ]) {
      expect(Buffer.from(decodeBase64Image(s, 100)).equals(bytes), s).toBe(true);
    }
    for (const s of ["/9j/4A$QHw", "/9j/4AAQ+w_", "/9j/4A=AQ", "/9j/4", "data:image/jpeg,/9j/"]) {
      expect(() => decodeBase64Image(s, 100), s).toThrow(AppError);
    }
  });
});
