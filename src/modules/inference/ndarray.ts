import { errors } from "../../platform/errors.ts";

/**
 * A decoded numpy-style array: a canonical little-endian dtype descr, a C-order shape and a
 * typed array over the elements. Shared by the json_numpy and msgpack-numpy codecs.
 */
export type DType = "|u1" | "|i1" | "<u2" | "<i2" | "<u4" | "<i4" | "<u8" | "<i8" | "<f4" | "<f8" | "|b1";

export type ElementArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

export interface NdArray {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** For `|b1` a Uint8Array of 0/1. */
  readonly data: ElementArray;
}

export interface ArrayLimits {
  /** Largest raw byte length accepted. */
  readonly maxBytes: number;
  readonly maxDims: number;
}

export const DEFAULT_ARRAY_LIMITS: ArrayLimits = { maxBytes: 64 * 1024 * 1024, maxDims: 8 };

const ITEMSIZE: Record<DType, number> = {
  "|u1": 1,
  "|i1": 1,
  "|b1": 1,
  "<u2": 2,
  "<i2": 2,
  "<u4": 4,
  "<i4": 4,
  "<u8": 8,
  "<i8": 8,
  "<f4": 4,
  "<f8": 8,
};

const PLAIN_NAMES: Record<string, DType> = {
  uint8: "|u1",
  int8: "|i1",
  bool: "|b1",
  uint16: "<u2",
  int16: "<i2",
  uint32: "<u4",
  int32: "<i4",
  uint64: "<u8",
  int64: "<i8",
  float32: "<f4",
  float64: "<f8",
};

export function itemsize(dtype: DType): number {
  return ITEMSIZE[dtype];
}

/**
 * Parses a numpy descr (`|u1`, `<f4`, `>f8`, `=i8`, `u1`) or plain name (`uint8`, `float32`).
 * Returns the canonical little-endian dtype and whether the source bytes are big-endian.
 * Kinds other than u/i/f/b (V void, O object, c complex, U/S strings, m/M dates) are refused.
 */
export function parseDType(descr: unknown): { dtype: DType; bigEndian: boolean } {
  if (typeof descr !== "string" || descr.length === 0 || descr.length > 16) {
    throw errors.invalidArray('dtype must be a short string such as "|u1" or "<f4".');
  }
  const plain = Object.hasOwn(PLAIN_NAMES, descr) ? PLAIN_NAMES[descr] : undefined;
  if (plain !== undefined) return { dtype: plain, bigEndian: false };
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (m === null) throw errors.invalidArray(`Unsupported dtype "${descr}".`);
  const order = m[1] as string;
  const kind = m[2] as string;
  const size = Number(m[3]);
  if (!"uifb".includes(kind)) {
    throw errors.invalidArray(`dtype kind "${kind}" is not accepted (numeric and bool arrays only).`);
  }
  const key = (size === 1 ? `|${kind}${size}` : `<${kind}${size}`) as DType;
  if (!Object.hasOwn(ITEMSIZE, key) || (kind === "b" && size !== 1)) {
    throw errors.invalidArray(`Unsupported dtype "${descr}".`);
  }
  return { dtype: key, bigEndian: order === ">" && size > 1 };
}

export function validateShape(shape: unknown, limits: ArrayLimits): number[] {
  if (!Array.isArray(shape) || shape.length > limits.maxDims) {
    throw errors.invalidArray(`shape must be an array of at most ${limits.maxDims} dimensions.`);
  }
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw errors.invalidArray("shape entries must be non-negative integers.");
    }
  }
  return shape as number[];
}

/**
 * Whether `v` is a decoded NdArray (what the msgpack-numpy and json_numpy decoders build), not a
 * caller's map that merely has `data` and `dtype` members: a known dtype, a shape of
 * non-negative integers, and data whose length matches them.
 */
export function isNdArray(v: unknown): v is NdArray {
  if (v === null || typeof v !== "object") return false;
  const a = v as Partial<NdArray>;
  if (typeof a.dtype !== "string" || !Object.hasOwn(ITEMSIZE, a.dtype) || !ArrayBuffer.isView(a.data)) return false;
  if (!Array.isArray(a.shape) || !a.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return false;
  return (a.data as ArrayBufferView).byteLength === elementCount(a.shape) * ITEMSIZE[a.dtype];
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Builds an NdArray from raw little- (or big-) endian bytes after checking the length.
 * `inPlace`: the caller hands the bytes over (freshly decoded, or a view of a message nobody
 * writes to): they become the array's data without a copy when they are little-endian and
 * aligned for the element type. Otherwise (and by default) they are copied.
 */
export function fromBytes(
  bytes: Uint8Array,
  dtype: DType,
  shape: readonly number[],
  bigEndian: boolean,
  limits: ArrayLimits,
  inPlace = false,
): NdArray {
  const size = itemsize(dtype);
  const count = elementCount(shape);
  const expected = count * size;
  if (expected > limits.maxBytes) {
    throw errors.invalidArray(`Array of ${expected} bytes exceeds the limit of ${limits.maxBytes}.`);
  }
  if (bytes.byteLength !== expected) {
    throw errors.invalidArray(
      `Array data has ${bytes.byteLength} bytes; shape [${shape.join(", ")}] of ${dtype} needs ${expected}.`,
    );
  }
  if (inPlace && !bigEndian && bytes.byteOffset % size === 0) {
    const data = typedView(dtype, bytes.buffer, bytes.byteOffset, count);
    if (dtype === "|b1") {
      for (const b of bytes) if (b > 1) throw errors.invalidArray("bool array holds a byte other than 0 or 1.");
    }
    return { dtype, shape: [...shape], data };
  }
  // Copy into a fresh, aligned buffer (the source may be a view at an odd offset).
  const buf = new ArrayBuffer(expected);
  const u8 = new Uint8Array(buf);
  u8.set(bytes);
  if (bigEndian) {
    for (let off = 0; off < expected; off += size) u8.subarray(off, off + size).reverse();
  }
  const data = typedView(dtype, buf, 0, count);
  if (dtype === "|b1") {
    for (const b of u8) if (b > 1) throw errors.invalidArray("bool array holds a byte other than 0 or 1.");
  }
  return { dtype, shape: [...shape], data };
}

function typedView(dtype: DType, buf: ArrayBufferLike, offset: number, count: number): ElementArray {
  switch (dtype) {
    case "|u1":
    case "|b1":
      return new Uint8Array(buf, offset, count);
    case "|i1":
      return new Int8Array(buf, offset, count);
    case "<u2":
      return new Uint16Array(buf, offset, count);
    case "<i2":
      return new Int16Array(buf, offset, count);
    case "<u4":
      return new Uint32Array(buf, offset, count);
    case "<i4":
      return new Int32Array(buf, offset, count);
    case "<u8":
      return new BigUint64Array(buf, offset, count);
    case "<i8":
      return new BigInt64Array(buf, offset, count);
    case "<f4":
      return new Float32Array(buf, offset, count);
    case "<f8":
      return new Float64Array(buf, offset, count);
  }
}

/** The canonical descr of a typed array (Uint8Array is `|u1`; pass `|b1` explicitly for bools). */
export function dtypeOf(data: ElementArray): DType {
  if (data instanceof Uint8Array) return "|u1";
  if (data instanceof Int8Array) return "|i1";
  if (data instanceof Uint16Array) return "<u2";
  if (data instanceof Int16Array) return "<i2";
  if (data instanceof Uint32Array) return "<u4";
  if (data instanceof Int32Array) return "<i4";
  if (data instanceof BigUint64Array) return "<u8";
  if (data instanceof BigInt64Array) return "<i8";
  if (data instanceof Float32Array) return "<f4";
  return "<f8";
}

/** Raw little-endian bytes of a typed array (this platform is little-endian). */
export function bytesOf(data: ElementArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Elements as plain numbers (int64 converted; callers bound their values). */
export function toNumbers(a: NdArray): number[] {
  return Array.from(a.data as ArrayLike<number | bigint>, (v) => Number(v));
}
