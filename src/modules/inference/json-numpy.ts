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
 * The json_numpy convention used by OpenVLA's deploy.py:
 * `{"__numpy__": "<standard base64 of raw C-order bytes>", "dtype": "<descr>", "shape": [..]}`.
 * See docs/protocols.md.
 */
export interface JsonNumpyDoc {
  readonly __numpy__: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The canonical base64 text an array was decoded from, so a forwarder need not encode it again. */
const sourceText = new WeakMap<ElementArray, string>();

/**
 * The canonical base64 of `data` if it was decoded by `decodeJsonNumpy` from exactly that text
 * (the `openvla-http` backend forwards a robot's image without encoding 150 KB again).
 */
export function jsonNumpyText(data: ElementArray): string | undefined {
  return sourceText.get(data);
}

export function isJsonNumpyDoc(v: unknown): v is { __numpy__: unknown } {
  return v !== null && typeof v === "object" && !Array.isArray(v) && Object.hasOwn(v, "__numpy__");
}

/** Decodes one json_numpy document with strict validation (base64 alphabet, byte length, bounds). */
export function decodeJsonNumpy(doc: unknown, limits: ArrayLimits = DEFAULT_ARRAY_LIMITS): NdArray {
  if (!isJsonNumpyDoc(doc)) throw errors.invalidArray('Expected a json_numpy object with a "__numpy__" member.');
  const o = doc as Record<string, unknown>;
  const { dtype, bigEndian } = parseDType(o.dtype);
  const shape = validateShape(o.shape, limits);
  const b64 = o.__numpy__;
  if (typeof b64 !== "string") throw errors.invalidArray('"__numpy__" must be a base64 string.');
  // Check the size before decoding: base64 of N bytes is 4 * ceil(N / 3) characters.
  if (b64.length > Math.ceil(limits.maxBytes / 3) * 4) {
    throw errors.invalidArray(`Array data exceeds the limit of ${limits.maxBytes} bytes.`);
  }
  if (b64.length % 4 !== 0) throw errors.invalidArray('"__numpy__" is not standard padded base64.');
  // Node's decoder skips characters outside the alphabet (whitespace, '$', a '=' inside) and
  // also reads the URL-safe '-' and '_': when the output has exactly the length the input
  // implies and neither of those two occurs, every character was standard base64. That check
  // costs no re-encoding and no regex scan (a 224x224x3 image is 200 KB of text: re-encoding
  // took about 0.2 ms and a 200 KB string, the regex about 1.3 ms); the rest goes through the
  // regex. The decoded buffer becomes the array's data as it is (no copy).
  const bytes = Buffer.from(b64, "base64");
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  const wellFormed = bytes.length === (b64.length / 4) * 3 - pad && !b64.includes("-") && !b64.includes("_");
  if (!wellFormed && !BASE64.test(b64)) {
    throw errors.invalidArray('"__numpy__" is not standard padded base64.');
  }
  const array = fromBytes(bytes, dtype, shape, bigEndian, limits, true);
  // Canonical (the spare bits of the last group are zero, as every encoder writes them) and
  // not byte-swapped: the text is exactly what encoding the array would give.
  if (wellFormed && !bigEndian && (pad === 0 || canonicalTail(b64))) sourceText.set(array.data, b64);
  return array;
}

function canonicalTail(b64: string): boolean {
  const tail = b64.slice(-4);
  return Buffer.from(tail, "base64").toString("base64") === tail;
}

/** Encodes a typed array as json_numpy (`dtype` overrides, e.g. `|b1` for a Uint8Array of bools). */
export function encodeJsonNumpy(data: ElementArray, shape: readonly number[], dtype?: DType): JsonNumpyDoc {
  if (elementCount(shape) !== data.length) {
    throw new RangeError(`shape [${shape.join(", ")}] does not match ${data.length} elements`);
  }
  return {
    __numpy__: Buffer.from(bytesOf(data)).toString("base64"),
    dtype: dtype ?? dtypeOf(data),
    shape: [...shape],
  };
}

/**
 * Replaces every json_numpy object inside a parsed JSON value by an NdArray, like
 * json_numpy's object hook. Depth and the number of arrays are bounded.
 */
export function reviveJsonNumpy(
  value: unknown,
  limits: ArrayLimits = DEFAULT_ARRAY_LIMITS,
  maxDepth = 16,
  maxArrays = 16,
): unknown {
  let arrays = 0;
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > maxDepth) throw errors.invalidArray(`Document nests deeper than ${maxDepth} levels.`);
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    if (v === null || typeof v !== "object") return v;
    if (isJsonNumpyDoc(v)) {
      arrays += 1;
      if (arrays > maxArrays) throw errors.invalidArray(`More than ${maxArrays} arrays in one document.`);
      return decodeJsonNumpy(v, limits);
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x, depth + 1);
    return out;
  };
  return walk(value, 0);
}

/**
 * The `encoded` variant of deploy.py: the body is `{"encoded": "<JSON text of the document>"}`.
 * Returns the inner document, parsed (arrays still as json_numpy objects).
 */
export function unwrapEncodedBody(body: unknown, maxChars = 64 * 1024 * 1024): unknown {
  if (body === null || typeof body !== "object" || Array.isArray(body) || !Object.hasOwn(body, "encoded")) {
    return body;
  }
  const encoded = (body as { encoded: unknown }).encoded;
  if (typeof encoded !== "string") throw errors.badRequest('"encoded" must be a string holding a JSON document.');
  if (encoded.length > maxChars) throw errors.invalidArray(`"encoded" exceeds ${maxChars} characters.`);
  try {
    return JSON.parse(encoded) as unknown;
  } catch {
    throw errors.invalidJson('"encoded" does not hold valid JSON.');
  }
}

/** The `encoded` variant's response: a JSON string holding the json_numpy document. */
export function encodedResponse(doc: unknown): string {
  return JSON.stringify(doc);
}
