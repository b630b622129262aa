import { describe, expect, it, vi } from "vitest";
import { AppError } from "../../platform/errors.ts";
import {
  decodeJsonNumpy,
  encodedResponse,
  encodeJsonNumpy,
  jsonNumpyText,
  reviveJsonNumpy,
  unwrapEncodedBody,
} from "./json-numpy.ts";
import { toNumbers } from "./ndarray.ts";

const doc = (bytes: number[], dtype: string, shape: number[]) => ({
  __numpy__: Buffer.from(bytes).toString("base64"),
  dtype,
  shape,
});

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof AppError ? e.code : "not-app-error";
  }
  return undefined;
}

describe("json_numpy", () => {
  it("decodes |u1 HxWx3 as numpy writes it (C order)", () => {
    const a = decodeJsonNumpy(doc([1, 2, 3, 4, 5, 6], "|u1", [1, 2, 3]));
    expect(a.dtype).toBe("|u1");
    expect(a.shape).toEqual([1, 2, 3]);
    expect([...a.data]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("decodes <f8 [7] (the /act response) byte-exactly", () => {
    // numpy: np.array([1.5, -2.0], dtype='<f8').tobytes()
    const a = decodeJsonNumpy(doc([0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0], "<f8", [2]));
    expect(toNumbers(a)).toEqual([1.5, -2]);
  });

  it("accepts <f4, |b1, <i8, plain names, and a scalar shape []", () => {
    expect(toNumbers(decodeJsonNumpy(doc([0, 0, 0x80, 0x3f], "<f4", [1])))).toEqual([1]);
    expect(toNumbers(decodeJsonNumpy(doc([0, 0, 0x80, 0x3f], "float32", [])))).toEqual([1]);
    expect(toNumbers(decodeJsonNumpy(doc([1, 0], "|b1", [2])))).toEqual([1, 0]);
    expect(toNumbers(decodeJsonNumpy(doc([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "<i8", [])))).toEqual([-1]);
    expect(decodeJsonNumpy(doc([7], "uint8", [])).shape).toEqual([]);
  });

  it("byte-swaps big-endian input", () => {
    expect(toNumbers(decodeJsonNumpy(doc([0x3f, 0x80, 0, 0], ">f4", [1])))).toEqual([1]);
  });

  it.each([
    ["wrong byte length", doc([1, 2, 3], "|u1", [2, 2])],
    ["non-base64", { __numpy__: "@@@@", dtype: "|u1", shape: [3] }],
    ["unpadded base64", { __numpy__: "AQI", dtype: "|u1", shape: [2] }],
    ["base64url characters", { __numpy__: "__8A", dtype: "|u1", shape: [3] }],
    ["a base64url '-'", { __numpy__: "AQ-D", dtype: "|u1", shape: [3] }],
    ["a space inside", { __numpy__: "AQ IDBA==", dtype: "|u1", shape: [5] }],
    ["three padding characters", { __numpy__: "A===", dtype: "|u1", shape: [1] }],
    ["a stray character inside", { __numpy__: "AQ.IDBA==", dtype: "|u1", shape: [5] }],
    ["padding in the middle", { __numpy__: "AQ==AQID", dtype: "|u1", shape: [4] }],
    ["object dtype", doc([1], "|O", [1])],
    ["void dtype", doc([1], "|V1", [1])],
    ["complex dtype", doc([1, 2, 3, 4, 5, 6, 7, 8], "<c8", [1])],
    ["unknown dtype", doc([1], "banana", [1])],
    ["negative dim", doc([1], "|u1", [-1])],
    ["fractional dim", doc([1], "|u1", [0.5])],
    ["too many dims", doc([1], "|u1", [1, 1, 1, 1, 1, 1, 1, 1, 1])],
    ["bool other than 0/1", doc([2], "|b1", [1])],
    ["missing __numpy__ string", { __numpy__: 5, dtype: "|u1", shape: [1] }],
  ])("refuses %s with invalid_array", (_name, d) => {
    expect(code(() => decodeJsonNumpy(d))).toBe("invalid_array");
  });

  it("accepts padded base64 whose last character carries non-zero spare bits, as before", () => {
    // "AQJ=" is "AQI=" (bytes 1, 2) with the spare low bits set: not canonical, still valid base64.
    expect(toNumbers(decodeJsonNumpy({ __numpy__: "AQJ=", dtype: "|u1", shape: [2] }))).toEqual([1, 2]);
  });

  it("accepts exactly the strings the standard-base64 pattern accepts (fuzzed, with stray characters)", () => {
    const pattern = /^[A-Za-z0-9+/]*={0,2}$/;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const strays = "=-_ \n$.";
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 5000; i++) {
      let s = "";
      const len = 4 * (1 + rand(4));
      for (let k = 0; k < len; k++) s += rand(8) === 0 ? strays[rand(strays.length)] : alphabet[rand(64)];
      // The byte count the string would decode to if it were valid: the shape the client declares.
      const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
      const d = { __numpy__: s, dtype: "|u1", shape: [(len / 4) * 3 - pad] };
      const expected = pattern.test(s) ? undefined : "invalid_array";
      expect([s, code(() => decodeJsonNumpy(d))]).toEqual([s, expected]);
    }
  });

  it("decodes the base64 straight into the buffer the array reads (no copy)", () => {
    const image = Buffer.alloc(224 * 224 * 3, 9);
    const spy = vi.spyOn(Buffer, "from");
    try {
      const a = decodeJsonNumpy({ __numpy__: image.toString("base64"), dtype: "|u1", shape: [224, 224, 3] });
      const decoded = spy.mock.results.find((r) => (r.value as Buffer).byteLength === image.byteLength)
        ?.value as Buffer;
      expect(decoded).toBeDefined();
      expect(a.data.buffer === decoded.buffer).toBe(true);
      expect(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(image)).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });

  it("remembers the canonical text an array came from, for forwarding without encoding again", () => {
    const text = Buffer.from([1, 2, 3, 4, 5]).toString("base64");
    const a = decodeJsonNumpy({ __numpy__: text, dtype: "|u1", shape: [5] });
    expect(jsonNumpyText(a.data)).toBe(text);
    // Non-canonical spare bits ("AQJ=" is [1, 2]) or a byte swap: the text is not the array's encoding.
    expect(jsonNumpyText(decodeJsonNumpy({ __numpy__: "AQJ=", dtype: "|u1", shape: [2] }).data)).toBeUndefined();
    expect(jsonNumpyText(decodeJsonNumpy(doc([0, 1], ">u2", [1])).data)).toBeUndefined();
    expect(jsonNumpyText(new Uint8Array(5))).toBeUndefined();
  });

  it("bounds the size before decoding", () => {
    const big = encodeJsonNumpy(new Uint8Array(1000), [1000]);
    expect(code(() => decodeJsonNumpy(big, { maxBytes: 999, maxDims: 8 }))).toBe("invalid_array");
    expect(code(() => decodeJsonNumpy(doc([1], "|u1", [1e9, 1e9]), { maxBytes: 1e6, maxDims: 8 }))).toBe(
      "invalid_array",
    );
  });

  it("round-trips typed arrays", () => {
    const f = new Float64Array([0.1, -2.5e-300, 7]);
    const d = encodeJsonNumpy(f, [3]);
    expect(d.dtype).toBe("<f8");
    expect([...decodeJsonNumpy(d).data]).toEqual([...f]);
  });

  it("revives arrays inside a request body and unwraps the `encoded` variant", () => {
    const inner = { image: doc([9, 9, 9], "|u1", [1, 1, 3]), instruction: "pick" };
    const body = { encoded: JSON.stringify(inner) };
    const revived = reviveJsonNumpy(unwrapEncodedBody(body)) as { image: { shape: number[] }; instruction: string };
    expect(revived.instruction).toBe("pick");
    expect(revived.image.shape).toEqual([1, 1, 3]);
    expect(unwrapEncodedBody(inner)).toBe(inner);
    expect(code(() => unwrapEncodedBody({ encoded: "{nope" }))).toBe("invalid_json");
    expect(code(() => unwrapEncodedBody({ encoded: 3 }))).toBe("bad_request");
    const resp = encodedResponse(encodeJsonNumpy(new Float64Array([1]), [1]));
    expect(JSON.parse(resp)).toEqual({ __numpy__: "AAAAAAAA8D8=", dtype: "<f8", shape: [1] });
  });

  it("bounds nesting and array count when reviving", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(code(() => reviveJsonNumpy(deep))).toBe("invalid_array");
    const many = Array.from({ length: 20 }, () => doc([1], "|u1", [1]));
    expect(code(() => reviveJsonNumpy(many))).toBe("invalid_array");
  });
});
