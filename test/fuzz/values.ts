import { crc32 } from "node:zlib";
import fc from "fast-check";

/**
 * Generated input for the fuzz tier: JSON values that can say what JSON.stringify cannot (raw
 * number texts such as `1e309`, duplicate and `__proto__` keys), hostile strings, edge numbers and
 * dates, a msgpack writer that can lie, and broken images. Pure: no app, no I/O.
 */

/** Text emitted verbatim into JSON (or as a float in msgpack). */
export class Raw {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** An object as ordered entries, so duplicate keys and `__proto__` survive serialization. */
export class Obj {
  readonly entries: [string, JV][];
  constructor(entries: [string, JV][]) {
    this.entries = entries;
  }
  get(key: string): JV | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }
}

/** Raw bytes: msgpack `bin`; base64 in JSON. */
export class Bin {
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
}

/** A msgpack-only value: the given bytes are spliced into the packed message as they are. */
export class RawMsgpack {
  readonly bytes: Buffer;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
}

export type JV = null | boolean | number | string | Raw | Obj | Bin | RawMsgpack | JV[];

export const obj = (o: Record<string, JV>): Obj => new Obj(Object.entries(o));

export function toJson(v: JV): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj) return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(",")}}`;
  if (v instanceof Bin) return JSON.stringify(Buffer.from(v.bytes).toString("base64"));
  if (v instanceof RawMsgpack) return "null";
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (typeof v === "number" && !Number.isFinite(v)) return "null";
  return JSON.stringify(v);
}

/** msgpack, written by hand so messages can carry ext types, lying lengths and raw splices. */
export function toMsgpack(v: JV): Buffer {
  const out: Buffer[] = [];
  const w = (b: Buffer | number[]) => out.push(Buffer.isBuffer(b) ? b : Buffer.from(b));
  const len = (n: number, fix: number, fixMax: number, c16: number, c32: number) => {
    if (n <= fixMax) w([fix | n]);
    else if (n < 0x10000) w([c16, n >> 8, n & 255]);
    else {
      const b = Buffer.alloc(5);
      b[0] = c32;
      b.writeUInt32BE(n, 1);
      w(b);
    }
  };
  const str = (s: string) => {
    const b = Buffer.from(s, "utf8");
    if (b.length < 32) w([0xa0 | b.length]);
    else if (b.length < 256) w([0xd9, b.length]);
    else if (b.length < 0x10000) w([0xda, b.length >> 8, b.length & 255]);
    else {
      const h = Buffer.alloc(5);
      h[0] = 0xdb;
      h.writeUInt32BE(b.length, 1);
      w(h);
    }
    w(b);
  };
  const bin = (u: Uint8Array) => {
    const b = Buffer.from(u);
    if (b.length < 256) w([0xc4, b.length]);
    else if (b.length < 0x10000) w([0xc5, b.length >> 8, b.length & 255]);
    else {
      const h = Buffer.alloc(5);
      h[0] = 0xc6;
      h.writeUInt32BE(b.length, 1);
      w(h);
    }
    w(b);
  };
  const num = (n: number) => {
    if (Number.isInteger(n) && n >= 0 && n < 128) w([n]);
    else if (Number.isInteger(n) && n < 0 && n >= -32) w([n & 255]);
    else if (Number.isInteger(n) && Math.abs(n) < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0xd2;
      b.writeInt32BE(n, 1);
      w(b);
    } else {
      const b = Buffer.alloc(9);
      b[0] = 0xcb;
      b.writeDoubleBE(n, 1);
      w(b);
    }
  };
  const go = (x: JV): void => {
    if (x === null) w([0xc0]);
    else if (x === true) w([0xc3]);
    else if (x === false) w([0xc2]);
    else if (typeof x === "number") num(x);
    else if (typeof x === "string") str(x);
    else if (x instanceof Raw) num(Number(x.text));
    else if (x instanceof Bin) bin(x.bytes);
    else if (x instanceof RawMsgpack) w(x.bytes);
    else if (x instanceof Obj) {
      len(x.entries.length, 0x80, 15, 0xde, 0xdf);
      for (const [k, y] of x.entries) {
        // A key written as "bin:name" is packed as bin (msgpack-numpy markers).
        if (k.startsWith("bin:")) bin(Buffer.from(k.slice(4)));
        else str(k);
        go(y);
      }
    } else {
      len(x.length, 0x90, 15, 0xdc, 0xdd);
      for (const y of x) go(y);
    }
  };
  go(v);
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------------
// Scalars

export const EDGE_NUMBER_TEXTS = [
  "1e309",
  "-1e309",
  "-0",
  "-0.0",
  "2e-400",
  "9007199254740993",
  "-9007199254740993",
  "18446744073709551616",
  "1E+2",
  "1.7976931348623157e308",
  "5e-324",
  "123456789012345678901234567890",
  "0.1e1",
  "1e-7",
  "4294967296",
  "2147483648",
  "-2147483649",
];

export const EDGE_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  -0.5,
  255,
  256,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  2 ** 63,
  2 ** 64,
  1e21,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.EPSILON,
  -Number.MAX_VALUE,
  1e9,
  1e9 + 1,
  -1e9 - 1,
];

export const DATE_EDGES = [
  "0000-01-01T00:00:00Z",
  "0000-01-01",
  "-000001-01-01T00:00:00Z",
  "9999-12-31T23:59:59.999Z",
  "10000-01-01T00:00:00Z",
  "+275760-09-13T00:00:00Z",
  "+275760-09-13T00:00:00.001Z",
  "-271821-04-20T00:00:00Z",
  "1970-01-01T00:00:00Z",
  "2026-02-30T00:00:00Z",
  "2026-13-01T00:00:00Z",
  "2026-12-05T25:61:61Z",
  "2026-12-05T00:00:00+99:99",
  "2026-12-05",
  "2026-12-05T00:00:00",
  "Invalid Date",
  "now",
  "0",
  "-1",
  "1e309",
  "2026-12-05T00:00:00.123456789Z",
  "\u00002026-12-05T00:00:00Z",
];

export const EVIL_STRINGS = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "\u0000\u0000\u0000",
  "\ud800",
  "\udfff",
  "x\ud800y",
  "\udc00\ud800",
  "\u202e",
  "\ufeff",
  "\uffff",
  "\r\n",
  "\t",
  "\u001b[31m",
  "\u0007\u0008\u000b\u000c",
  "%00",
  "%",
  "%ZZ",
  "%e0%a4%a",
  "../../etc/passwd",
  "'; drop table users;--",
  "\\",
  '"',
  "<script>alert(1)</script>",
  "NaN",
  "Infinity",
  "-Infinity",
  "null",
  "true",
  "undefined",
  "1e309",
  "-0",
  "9007199254740993",
  "__proto__",
  "constructor",
  "prototype",
  "0",
  "-1",
  "🤖",
  "\u0301\u0301\u0301",
  "a".repeat(129),
  "a".repeat(1001),
  "x".repeat(5000),
  "arm-1",
  "bridge_orig",
  "mock-openvla-7b",
  "demo-vla-tiny",
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
  "data:image/jpeg;base64,",
  "data:image/png;base64,!!!!",
  "/wCA",
  "====",
];

const ctrlChar = fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c));
const surrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

/** Strings with control characters (NUL!), lone surrogates, edge texts, occasionally huge. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 4 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 40 }), weight: 3 },
  { arbitrary: fc.constantFrom(...EVIL_STRINGS), weight: 6 },
  { arbitrary: fc.constantFrom(...DATE_EDGES), weight: 1 },
  { arbitrary: fc.constantFrom(...EDGE_NUMBER_TEXTS), weight: 1 },
  {
    arbitrary: fc
      .array(fc.oneof(ctrlChar, surrogate, fc.string({ maxLength: 3 })), { minLength: 1, maxLength: 12 })
      .map((a) => a.join("")),
    weight: 4,
  },
  {
    // Huge, bounded: just over the JSON body limit (256 KiB) at most a few times per hundred cases.
    arbitrary: fc
      .tuple(fc.constantFrom(300, 4_096, 70_000, 300_000), fc.constantFrom("A", "\u0000", "é", "\ud800"))
      .map(([n, c]) => c.repeat(n)),
    weight: 1,
  },
);

export const edgeNumber: fc.Arbitrary<JV> = fc.oneof(
  { arbitrary: fc.constantFrom(...EDGE_NUMBERS), weight: 4 },
  { arbitrary: fc.constantFrom(...EDGE_NUMBER_TEXTS).map((t) => new Raw(t)), weight: 3 },
  { arbitrary: fc.integer(), weight: 2 },
  { arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }), weight: 2 },
  { arbitrary: fc.constantFrom("NaN", "Infinity", "1e309", "-0", "0x10", "1_000", " 1"), weight: 1 },
);

export const edgeDate: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...DATE_EDGES), weight: 3 },
  {
    arbitrary: fc
      .date({ noInvalidDate: false })
      .map((d) => (Number.isNaN(d.getTime()) ? "Invalid Date" : d.toISOString())),
    weight: 2,
  },
  { arbitrary: fc.integer({ min: -1, max: 2 ** 31 }).map((n) => String(n)), weight: 1 },
);

/** Any JSON value, nested a little, with edge numbers, hostile strings and odd keys. */
export const anyJson: fc.Arbitrary<JV> = fc.letrec<{ v: JV }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { arbitrary: fc.constant(null), weight: 1 },
    { arbitrary: fc.boolean(), weight: 1 },
    { arbitrary: edgeNumber, weight: 2 },
    { arbitrary: hostileString, weight: 3 },
    { arbitrary: fc.array(tie("v"), { maxLength: 4 }), weight: 1 },
    {
      arbitrary: fc
        .array(fc.tuple(fc.oneof(hostileString, fc.constantFrom("__proto__", "constructor", "type")), tie("v")), {
          maxLength: 4,
        })
        .map((e) => new Obj(e)),
      weight: 1,
    },
  ),
})).v;

/** Nested arrays/objects far past any sane depth, as JSON text. */
export const deepJson: fc.Arbitrary<Raw> = fc
  .tuple(fc.constantFrom(64, 1_000, 20_000), fc.boolean())
  .map(([n, asObj]) => new Raw(asObj ? `${'{"a":'.repeat(n)}1${"}".repeat(n)}` : `${"[".repeat(n)}1${"]".repeat(n)}`));

/** Percent-encodes anything, lone surrogates included (as their CESU-8 bytes). */
export function encodeAny(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    let out = "";
    for (const ch of s) {
      const c = ch.charCodeAt(0);
      if (ch.length === 1 && c >= 0xd800 && c <= 0xdfff) {
        out += `%${(0xe0 | (c >> 12)).toString(16)}%${(0x80 | ((c >> 6) & 63)).toString(16)}%${(0x80 | (c & 63)).toString(16)}`;
      } else out += encodeURIComponent(ch);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Images and arrays

export interface ImageSeeds {
  readonly jpeg: Buffer;
  readonly png: Buffer;
}

function pngWithSize(png: Buffer, w: number, h: number, fixCrc: boolean): Buffer {
  const b = Buffer.from(png);
  // Signature (8) + IHDR length (4) + "IHDR" (4): width at 16, height at 20, CRC at 29.
  b.writeUInt32BE(w >>> 0, 16);
  b.writeUInt32BE(h >>> 0, 20);
  if (fixCrc) b.writeUInt32BE(crc32(b.subarray(12, 29)) >>> 0, 29);
  return b;
}

function jpegWithSize(jpeg: Buffer, w: number, h: number): Buffer {
  const b = Buffer.from(jpeg);
  for (let i = 2; i + 9 < b.length; ) {
    if (b[i] !== 0xff) break;
    const marker = b[i + 1] as number;
    const len = b.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xc3) {
      b.writeUInt16BE(h & 0xffff, i + 5);
      b.writeUInt16BE(w & 0xffff, i + 7);
      return b;
    }
    i += 2 + len;
  }
  return b;
}

/** Encoded image files: valid, truncated, flipped, headers only, dimensions that lie. */
export function imageBytes(seeds: ImageSeeds): fc.Arbitrary<Buffer> {
  const dims = fc.constantFrom(0, 1, 65535, 0x7fffffff, 0xffffffff, 20000);
  return fc.oneof(
    { arbitrary: fc.constantFrom(seeds.jpeg, seeds.png), weight: 4 },
    {
      arbitrary: fc
        .tuple(fc.constantFrom(seeds.jpeg, seeds.png), fc.nat())
        .map(([b, n]) => b.subarray(0, n % b.length)),
      weight: 2,
    },
    {
      arbitrary: fc
        .tuple(fc.constantFrom(seeds.jpeg, seeds.png), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 8 }))
        .map(([b, flips]) => {
          const c = Buffer.from(b);
          for (const [at, v] of flips) c[at % c.length] = v;
          return c;
        }),
      weight: 2,
    },
    {
      arbitrary: fc.tuple(dims, dims, fc.boolean()).map(([w, h, crc]) => pngWithSize(seeds.png, w, h, crc)),
      weight: 2,
    },
    { arbitrary: fc.tuple(dims, dims).map(([w, h]) => jpegWithSize(seeds.jpeg, w, h)), weight: 2 },
    {
      arbitrary: fc.constantFrom(
        Buffer.alloc(0),
        Buffer.from([0xff, 0xd8]),
        Buffer.from([0xff, 0xd8, 0xff, 0xd9]),
        Buffer.from("89504e470d0a1a0a", "hex"),
        Buffer.from("GIF89a\u0001\u0000\u0001\u0000"),
        Buffer.from("RIFF\u0000\u0000\u0000\u0000WEBPVP8 "),
        Buffer.from("<svg xmlns='http://www.w3.org/2000/svg' width='99999' height='99999'/>"),
      ),
      weight: 1,
    },
    { arbitrary: fc.uint8Array({ maxLength: 256 }).map((u) => Buffer.from(u)), weight: 1 },
  );
}

const DTYPES = ["|u1", "uint8", "<u1", ">u1", "|i1", "<f4", ">f8", "<f8", "|b1", "<u8", "<i8", ">u2", "=u1"];
const BAD_DTYPES = ["", "|V8", "O", "<c8", "<U4", "|S3", "<M8", "<f16", "u1u1", "\u0000", "<f2", "float", "|u0"];

const shapeArb: fc.Arbitrary<JV> = fc.oneof(
  fc.constantFrom<JV>(
    [8, 8, 3],
    [16, 16, 3],
    [3, 8, 8],
    [],
    [0, 0, 3],
    [1],
    [-1, 8, 3],
    [8, 8, 3, 1, 1, 1, 1, 1, 1],
    [2 ** 31, 2 ** 31, 3],
    [1e9, 1e9, 3],
    [65536, 65536, 3],
    [8.5, 8, 3],
    ["8", 8, 3],
    [null, 8, 3],
    [new Raw("1e309"), 1, 3],
    [new Raw("-0"), 8, 3],
    "8,8,3",
    null,
  ),
  fc.array(fc.integer({ min: -2, max: 70_000 }), { maxLength: 9 }),
);

/** A json_numpy / msgpack-numpy array's parts: data bytes, dtype and shape, which may disagree. */
export const ndarrayParts: fc.Arbitrary<{ data: Uint8Array; dtype: JV; shape: JV }> = fc.record({
  data: fc.oneof(
    fc.constantFrom(8 * 8 * 3, 16 * 16 * 3, 0, 1, 191, 193, 1000).map((n) => new Uint8Array(n).fill(7)),
    fc.uint8Array({ maxLength: 300 }),
  ),
  dtype: fc.oneof(fc.constantFrom<JV>(...DTYPES, ...BAD_DTYPES), hostileString, fc.constant<JV>(3)),
  shape: shapeArb,
});

/** `{"__numpy__": ...}` documents whose shape/dtype/base64 may lie. */
export const jsonNumpyDoc: fc.Arbitrary<JV> = fc
  .tuple(
    ndarrayParts,
    fc.constantFrom("ok", "urlsafe", "garbage", "not-string", "missing-dtype", "extra", "huge-claim"),
  )
  .map(([p, how]) => {
    const b64 = Buffer.from(p.data).toString("base64");
    const entries: [string, JV][] = [
      ["__numpy__", b64],
      ["dtype", p.dtype],
      ["shape", p.shape],
    ];
    if (how === "urlsafe") entries[0] = ["__numpy__", Buffer.from(p.data).toString("base64url")];
    if (how === "garbage") entries[0] = ["__numpy__", "!!!\u0000not base64==="];
    if (how === "not-string") entries[0] = ["__numpy__", [1, 2, 3]];
    if (how === "missing-dtype") entries.splice(1, 1);
    if (how === "extra") entries.push(["__proto__", obj({ polluted: true })]);
    if (how === "huge-claim") entries[2] = ["shape", [100_000, 100_000, 3]];
    return new Obj(entries);
  });

/** A well-formed uint8 16x16x3 msgpack-numpy image with bin marker keys (what openpi-client sends). */
export const validNdarray: JV = new Obj([
  ["bin:__ndarray__", true],
  ["bin:data", new Bin(new Uint8Array(16 * 16 * 3).fill(90))],
  ["bin:dtype", "|u1"],
  ["bin:shape", [16, 16, 3]],
]);

/** msgpack-numpy `__ndarray__` maps (bin or str marker keys) whose header may lie. */
export const msgpackNdarray: fc.Arbitrary<JV> = fc
  .tuple(ndarrayParts, fc.boolean(), fc.constantFrom("ok", "data-not-bin", "marker-false", "no-shape", "generic"))
  .map(([p, binKeys, how]) => {
    const k = (s: string) => (binKeys ? `bin:${s}` : s);
    if (how === "generic")
      return new Obj([
        [k("__npgeneric__"), true],
        [k("data"), p.shape],
        [k("dtype"), p.dtype],
      ]);
    const entries: [string, JV][] = [
      [k("__ndarray__"), how !== "marker-false"],
      [k("data"), how === "data-not-bin" ? Buffer.from(p.data).toString("base64") : new Bin(p.data)],
      [k("dtype"), p.dtype],
      [k("shape"), p.shape],
    ];
    if (how === "no-shape") entries.pop();
    return new Obj(entries);
  });

/** msgpack oddities: ext types, deep nesting, truncated containers, reserved bytes. */
export const msgpackOddity: fc.Arbitrary<RawMsgpack> = fc
  .oneof(
    fc.constantFrom(
      Buffer.from([0xd4, 0x01, 0x00]), // fixext1
      Buffer.from([0xd6, 0xff, 0, 0, 0, 1]), // timestamp ext (-1)
      Buffer.from([0xc7, 0x03, 0x7f, 1, 2, 3]), // ext8
      Buffer.from([0xc1]), // never used
      Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), // array32 claiming 4G items, none follow
      Buffer.from([0xdf, 0x7f, 0xff, 0xff, 0xff]), // map32 claiming 2G entries
      Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00]), // bin32 claiming 2 GiB
      Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x41]), // str32 lying
      Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // uint64 max
      Buffer.from([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]), // int64 min
      Buffer.from([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1]), // NaN
      Buffer.from([0xa3, 0xed, 0xa0, 0x80]), // str with a CESU surrogate
      Buffer.from([0xa2, 0xff, 0xfe]), // str with invalid UTF-8
    ),
    fc.constantFrom(32, 1_000, 100_000).map((n) => Buffer.concat([Buffer.alloc(n, 0x91), Buffer.from([0xc0])])),
    fc.constantFrom(32, 1_000, 100_000).map((n) => {
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) parts.push(Buffer.from([0x81, 0xa1, 0x61]));
      parts.push(Buffer.from([0xc0]));
      return Buffer.concat(parts);
    }),
  )
  .map((b) => new RawMsgpack(b));
