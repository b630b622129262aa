import { Packr, Unpackr } from "msgpackr";
import type { Frame } from "./render.ts";

/**
 * The client side of the array conventions the server speaks (docs/protocols.md), kept here so
 * sim/ stays free of server code: json_numpy (OpenVLA /act, also accepted by REST and streams)
 * and openpi's msgpack-numpy (bin marker keys). Frames travel as raw uint8 HxWx3 arrays, so
 * every protocol feeds the model the same pixels (no lossy encoding).
 */

/** A frame as a json_numpy uint8 HxWx3 document. */
export function frameJsonNumpy(frame: Frame): { __numpy__: string; dtype: "|u1"; shape: [number, number, 3] } {
  return {
    __numpy__: Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength).toString("base64"),
    dtype: "|u1",
    shape: [frame.height, frame.width, 3],
  };
}

/** Decodes a json_numpy float array (`<f8` or `<f4`, the /act answer) to numbers. */
export function decodeJsonNumpyFloats(doc: unknown): { values: number[]; shape: number[] } | null {
  if (doc === null || typeof doc !== "object") return null;
  const d = doc as { __numpy__?: unknown; dtype?: unknown; shape?: unknown };
  if (typeof d.__numpy__ !== "string" || !Array.isArray(d.shape)) return null;
  const bytes = Buffer.from(d.__numpy__, "base64");
  return { values: floatsOf(bytes, d.dtype), shape: d.shape.map(Number) } as { values: number[]; shape: number[] };
}

function floatsOf(bytes: Uint8Array, dtype: unknown): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  if (dtype === "<f8") for (let i = 0; i + 8 <= bytes.byteLength; i += 8) out.push(view.getFloat64(i, true));
  else if (dtype === "<f4") for (let i = 0; i + 4 <= bytes.byteLength; i += 4) out.push(view.getFloat32(i, true));
  else throw new Error(`unexpected dtype ${String(dtype)} (expected <f4 or <f8)`);
  return out;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: "number" });
const bin = (s: string) => Buffer.from(s);

/** msgpack of a plain object whose `Frame` values become uint8 ndarrays with bin markers (what openpi-client writes). */
export function packOpenpi(value: Record<string, unknown>): Buffer {
  const wire = new Map<unknown, unknown>();
  for (const [k, v] of Object.entries(value)) {
    if (isFrame(v)) {
      wire.set(
        k,
        new Map<unknown, unknown>([
          [bin("__ndarray__"), true],
          [bin("data"), Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength)],
          [bin("dtype"), "|u1"],
          [bin("shape"), [v.height, v.width, 3]],
        ]),
      );
    } else if (v instanceof Float32Array) {
      wire.set(
        k,
        new Map<unknown, unknown>([
          [bin("__ndarray__"), true],
          [bin("data"), Buffer.from(v.buffer, v.byteOffset, v.byteLength)],
          [bin("dtype"), "<f4"],
          [bin("shape"), [v.length]],
        ]),
      );
    } else {
      wire.set(k, v);
    }
  }
  return packr.pack(wire);
}

function isFrame(v: unknown): v is Frame {
  return v !== null && typeof v === "object" && (v as Frame).data instanceof Uint8Array && "width" in v;
}

/** A float ndarray decoded from msgpack-numpy. */
export type FloatArray = { values: number[]; shape: number[] };

/** Decodes a msgpack message: maps become objects (bin keys read as text), float ndarrays become FloatArray. */
export function unpackOpenpi(bytes: Uint8Array): unknown {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (!(v instanceof Map)) return v;
    const fields = new Map<string, unknown>();
    for (const [k, x] of v) fields.set(typeof k === "string" ? k : Buffer.from(k as Uint8Array).toString("utf8"), x);
    if (fields.get("__ndarray__") === true) {
      const data = fields.get("data");
      if (!(data instanceof Uint8Array)) throw new Error("ndarray data is not bin");
      return { values: floatsOf(data, fields.get("dtype")), shape: (fields.get("shape") as number[]).map(Number) };
    }
    const out: Record<string, unknown> = {};
    for (const [name, x] of fields) out[name] = walk(x);
    return out;
  };
  return walk(unpackr.unpack(bytes));
}

/** Rows of a row-major [H, D] array. */
export function rows(a: FloatArray): number[][] {
  const [h, d] = a.shape.length === 1 ? [1, a.shape[0] as number] : [a.shape[0] as number, a.shape[1] as number];
  return Array.from({ length: h }, (_, i) => a.values.slice(i * d, (i + 1) * d));
}
