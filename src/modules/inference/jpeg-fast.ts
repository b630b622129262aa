import { readFileSync } from "node:fs";
import mozjpegFactory from "@jsquash/jpeg/codec/dec/mozjpeg_dec.js";

/**
 * The fast path for small, clean JPEGs: libjpeg (mozjpeg, compiled to WebAssembly) decoding
 * synchronously on the calling thread.
 *
 * Why: a 224x224 camera frame costs sharp about 0.85 ms of CPU plus a hop to the libuv pool and
 * back (libvips builds a pipeline per call), against about 0.36 ms here with no hop. Under many
 * concurrent streams the hop, not the decode, made the latency (frames queued for the pool).
 * The output is bit-identical to sharp's (both are libjpeg with the same IDCT and upsampling;
 * a test compares them).
 *
 * It only ever answers for images it is sure of; everything else is `undefined` and the caller
 * decodes with sharp, which stays the single authority on what is valid:
 * - baseline, extended or progressive 8-bit JPEG with 1 or 3 components and no ICC profile
 *   (CMYK, 12-bit, arithmetic coding, colour-managed files go to sharp);
 * - at most `MAX_PIXELS` (it blocks the event loop for the decode, so only small frames);
 * - libjpeg raised no warning (truncation and corrupt entropy data are warnings in libjpeg: sharp
 *   then decides, and refuses a truncated file) and no error.
 * After an error the WebAssembly instance is replaced (libjpeg's error exit skips its cleanup).
 */
export const MAX_PIXELS = 512 * 512;
/** The RGBA -> RGB conversion reads 32-bit words; on a big-endian host the fast path stays off. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

interface ImageDataLike {
  readonly data: Uint8ClampedArray;
  readonly width: number;
  readonly height: number;
}
interface Decoder {
  decode(data: Uint8Array, preserveOrientation: boolean): ImageDataLike | null;
}
// The WebAssembly global is not in this project's TypeScript libs (no DOM); what is used of it:
interface WasmInstance {
  readonly exports: unknown;
}
const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => WasmInstance;
    };
  }
).WebAssembly;

let compiled: object | undefined;
let current: Promise<Decoder> | undefined;
let ready: Decoder | undefined;
let warnings = 0;

function instantiate(): Promise<Decoder> {
  compiled ??= new Wasm.Module(readFileSync(new URL(import.meta.resolve("@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm"))));
  const module = compiled;
  const p = (mozjpegFactory as unknown as (options: Record<string, unknown>) => Promise<Decoder>)({
    noInitialRun: true,
    instantiateWasm: (imports: object, callback: (i: WasmInstance) => void) => {
      const instance = new Wasm.Instance(module, imports);
      callback(instance);
      return instance.exports;
    },
    // libjpeg prints its warnings ("Premature end of JPEG file", "Corrupt JPEG data: ...").
    print: () => {},
    printErr: () => {
      warnings++;
    },
  }).then((d) => {
    ready = d;
    return d;
  });
  current = p;
  // Callers that only start the load (`void instantiate()`) must not leave an unhandled
  // rejection behind if the WebAssembly cannot load: the fast path then simply stays off.
  p.catch(() => undefined);
  return p;
}

/** Loads the decoder (idempotent); the fast path is off until this resolves. */
export function warmFastJpeg(): Promise<void> {
  return (current ?? instantiate()).then(() => undefined);
}

/** What the fast path accepts, from the header: SOF0/1/2, 8-bit, 1 or 3 components, no ICC. */
export function fastJpegEligible(b: Uint8Array): boolean {
  const u16 = (i: number) => ((b[i] as number) << 8) | (b[i + 1] as number);
  let i = 2;
  let sof = false;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return false;
    const marker = b[i + 1] as number;
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0xda) return sof; // start of scan: the header is complete
    const length = u16(i + 2);
    if (length < 2) return false;
    if (
      marker === 0xe2 &&
      i + 15 < b.length &&
      Buffer.from(b.subarray(i + 4, i + 15)).toString("latin1") === "ICC_PROFILE"
    ) {
      return false;
    }
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (marker > 0xc2 || i + 9 >= b.length) return false; // lossless, hierarchical, arithmetic
      const precision = b[i + 4];
      const components = b[i + 9];
      if (precision !== 8 || (components !== 1 && components !== 3)) return false;
      sof = true;
    }
    i += 2 + length;
  }
  return false;
}

/**
 * Decodes to packed RGB, or `undefined` when the fast path declines (then use sharp).
 * `width`/`height` are the header's, already checked against the limits by the caller.
 */
export function decodeJpegFast(
  bytes: Uint8Array,
  width: number,
  height: number,
): { data: Uint8Array; width: number; height: number } | undefined {
  const decoder = ready;
  if (decoder === undefined) {
    if (current === undefined) void instantiate();
    return undefined;
  }
  if (!LITTLE_ENDIAN || width * height > MAX_PIXELS || !fastJpegEligible(bytes)) return undefined;
  warnings = 0;
  let image: ImageDataLike | null;
  try {
    image = decoder.decode(bytes, false);
  } catch {
    ready = undefined;
    void instantiate();
    return undefined;
  }
  if (image === null || warnings > 0 || image.width !== width || image.height !== height) return undefined;
  // RGBA -> RGB through 32-bit reads (little-endian: R is the low byte); 3-4x faster than
  // indexing the clamped byte array.
  const px = new Uint32Array(image.data.buffer, image.data.byteOffset, width * height);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, p = 0; i < px.length; i++, p += 3) {
    const v = px[i] as number;
    rgb[p] = v;
    rgb[p + 1] = v >>> 8;
    rgb[p + 2] = v >>> 16;
  }
  return { data: rgb, width, height };
}
