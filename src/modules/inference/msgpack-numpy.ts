import { Packr, Unpackr } from "msgpackr";
import { errors } from "../../platform/errors.ts";
import {
  type ArrayLimits,
  bytesOf,
  DEFAULT_ARRAY_LIMITS,
  type DType,
  dtypeOf,
  type ElementArray,
  elementCount,
  fromBytes,
  type NdArray,
  parseDType,
  validateShape,
} from "./ndarray.ts";

/**
 * openpi's msgpack-numpy convention (openpi-client msgpack_numpy.py), see docs/protocols.md:
 * arrays are maps whose marker keys are msgpack **bin**:
 * `{bin"__ndarray__": true, bin"data": bin, bin"dtype": str, bin"shape": [..]}`, numpy scalars
 * `{bin"__npgeneric__": true, bin"data": value, bin"dtype": str}`. Ordinary keys are str.
 * We always write bin markers (the stock client only recognises those) and read both forms.
 */
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: "number" });

const K = {
  ndarray: Buffer.from("__ndarray__"),
  npgeneric: Buffer.from("__npgeneric__"),
  data: Buffer.from("data"),
  dtype: Buffer.from("dtype"),
  shape: Buffer.from("shape"),
};

/** An array to encode: a typed array with its shape (and optional dtype override). */
export interface ArrayToEncode {
  readonly data: ElementArray;
  readonly shape: readonly number[];
  readonly dtype?: DType;
}

function isArrayToEncode(v: unknown): v is ArrayToEncode {
  return v !== null && typeof v === "object" && ArrayBuffer.isView((v as { data?: unknown }).data) && "shape" in v;
}

function toWire(v: unknown, depth: number): unknown {
  if (depth > 32) throw new RangeError("value nests too deeply");
  if (isArrayToEncode(v)) {
    if (elementCount(v.shape) !== v.data.length) throw new RangeError("shape does not match the data length");
    return new Map<unknown, unknown>([
      [K.ndarray, true],
      [K.data, Buffer.from(bytesOf(v.data))],
      [K.dtype, v.dtype ?? dtypeOf(v.data)],
      [K.shape, [...v.shape]],
    ]);
  }
  if (Array.isArray(v)) return v.map((x) => toWire(x, depth + 1));
  if (v instanceof Uint8Array || v === null || typeof v !== "object") return v;
  const m = new Map<unknown, unknown>();
  for (const [k, x] of Object.entries(v)) m.set(k, toWire(x, depth + 1));
  return m;
}

/** Encodes a plain object tree; values shaped like {data: TypedArray, shape} become ndarrays. */
export function packMsgpackNumpy(value: unknown): Buffer {
  return packr.pack(toWire(value, 0));
}

export interface DecodeOptions {
  readonly limits?: ArrayLimits;
  readonly maxDepth?: number;
}

function keyName(k: unknown): string | undefined {
  if (typeof k === "string") return k;
  if (k instanceof Uint8Array) return Buffer.from(k).toString("utf8");
  return undefined;
}

/**
 * Decodes an observation: maps become plain objects with string keys (bin keys are read as
 * UTF-8), ndarray markers become NdArray, scalar markers become numbers/booleans.
 * Kinds V, O and c and anything malformed are refused with invalid_array.
 */
export function unpackMsgpackNumpy(bytes: Uint8Array, options: DecodeOptions = {}): unknown {
  const limits = options.limits ?? DEFAULT_ARRAY_LIMITS;
  const maxDepth = options.maxDepth ?? 16;
  let raw: unknown;
  try {
    raw = unpackr.unpack(bytes);
  } catch (e) {
    throw errors.invalidArray(`Not valid msgpack: ${e instanceof Error ? e.message : String(e)}`);
  }
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > maxDepth) throw errors.invalidArray(`Document nests deeper than ${maxDepth} levels.`);
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    if (!(v instanceof Map)) {
      if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
        throw errors.invalidArray("Unsupported msgpack extension value.");
      }
      return v;
    }
    const fields = new Map<string, unknown>();
    for (const [k, x] of v) {
      const name = keyName(k);
      if (name === undefined) throw errors.invalidArray("Map keys must be str or bin.");
      fields.set(name, x);
    }
    if (fields.get("__ndarray__") === true) return decodeNdarray(fields, limits);
    if (fields.get("__npgeneric__") === true) return decodeScalar(fields);
    const out: Record<string, unknown> = Object.create(null);
    for (const [name, x] of fields) out[name] = walk(x, depth + 1);
    return out;
  };
  return walk(raw, 0);
}

function decodeNdarray(fields: Map<string, unknown>, limits: ArrayLimits): NdArray {
  const { dtype, bigEndian } = parseDType(fields.get("dtype"));
  const shape = validateShape(fields.get("shape"), limits);
  const data = fields.get("data");
  if (!(data instanceof Uint8Array)) throw errors.invalidArray("ndarray data must be msgpack bin.");
  // `data` is a view of the received message (msgpackr does not copy bin values), which nothing
  // writes to: the array reads it in place when aligned.
  return fromBytes(data, dtype, shape, bigEndian, limits, true);
}

function decodeScalar(fields: Map<string, unknown>): number | boolean {
  const { dtype } = parseDType(fields.get("dtype"));
  const data = fields.get("data");
  if (typeof data === "boolean" && dtype === "|b1") return data;
  if (typeof data === "number" && Number.isFinite(data)) return data;
  if (typeof data === "bigint") return Number(data);
  throw errors.invalidArray(`numpy scalar of dtype ${dtype} has an invalid value.`);
}
