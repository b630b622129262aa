/**
 * NumPy `.npy` format version 1.0 for the two dtypes the datasets use (uint8 and little-endian
 * float32), C order. `numpy.load` reads these files as they are.
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */

export type NpyArray =
  | { dtype: "uint8"; shape: number[]; data: Uint8Array }
  | { dtype: "float32"; shape: number[]; data: Float32Array };

const DESCR = { uint8: "|u1", float32: "<f4" } as const;
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

/** The 10-byte preamble + header dict, padded with spaces and a newline to a multiple of 64 bytes. */
export function npyHeader(dtype: NpyArray["dtype"], shape: readonly number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 10 - 1, " ");
  dict += "\n";
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out[8] = dict.length & 0xff;
  out[9] = dict.length >> 8;
  for (let i = 0; i < dict.length; i++) out[10 + i] = dict.charCodeAt(i);
  return out;
}

export function encodeNpy(array: NpyArray): Uint8Array {
  const count = array.shape.reduce((a, b) => a * b, 1);
  if (count !== array.data.length) throw new Error(`shape ${array.shape} does not match ${array.data.length} values`);
  const header = npyHeader(array.dtype, array.shape);
  const body = new Uint8Array(array.data.buffer, array.data.byteOffset, array.data.byteLength);
  const out = new Uint8Array(header.length + body.length);
  out.set(header);
  out.set(body, header.length);
  return out;
}

export function decodeNpy(bytes: Uint8Array): NpyArray {
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new Error("not a .npy file");
  if (bytes[6] !== 1) throw new Error(`unsupported .npy version ${bytes[6]}`);
  const headerLength = (bytes[8] as number) | ((bytes[9] as number) << 8);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + headerLength));
  const descr = /'descr': '([^']+)'/.exec(header)?.[1];
  const shapeText = /'shape': \(([^)]*)\)/.exec(header)?.[1];
  if (/'fortran_order': True/.test(header)) throw new Error("fortran order is not supported");
  if (shapeText === undefined) throw new Error("no shape in the .npy header");
  const shape = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const start = 10 + headerLength;
  const body = bytes.slice(start);
  if (descr === "|u1") return { dtype: "uint8", shape, data: body };
  if (descr === "<f4") return { dtype: "float32", shape, data: new Float32Array(body.buffer, 0, body.length / 4) };
  throw new Error(`unsupported dtype ${descr}`);
}
