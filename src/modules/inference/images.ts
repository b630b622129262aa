import { hash } from "node:crypto";
import sharp from "sharp";

type Sharp = ReturnType<typeof sharp>;
type SharpOptions = NonNullable<Parameters<typeof sharp>[1]>;
type Metadata = Awaited<ReturnType<Sharp["metadata"]>>;
interface OutputInfo {
  width: number;
  height: number;
  channels: number;
}

import { errors } from "../../platform/errors.ts";
import { inlineJpegDecoder, type JpegDecoder } from "./jpeg-pool.ts";
import type { NdArray } from "./ndarray.ts";

/**
 * Image intake: raw JPEG/PNG/WebP bytes or a uint8 HxWx3 array, bounded before any pixel is
 * decoded, converted to 3-channel sRGB and preprocessed per the model's strategy into a
 * packed HxWx3 uint8 buffer (row-major, RGB interleaved).
 */
export type PreprocessStrategy = "resize-naive" | "letterbox" | "center-crop";
export const PREPROCESS_STRATEGIES: readonly PreprocessStrategy[] = ["resize-naive", "letterbox", "center-crop"];

export interface ImageSpec {
  readonly width: number;
  readonly height: number;
  readonly strategy: PreprocessStrategy;
  /** center-crop only: fraction of the AREA kept (0.9 for OpenVLA LIBERO checkpoints). */
  readonly cropArea?: number;
}

export interface ImageLimits {
  readonly maxEncodedBytes: number;
  /** Declared width x height allowed, checked from the header before decoding. */
  readonly maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxEncodedBytes: 8 * 1024 * 1024, maxPixels: 4096 * 4096 };

export type ImageInput = { readonly bytes: Uint8Array } | { readonly array: NdArray };

export interface PreparedImage {
  /** width x height x 3 bytes, RGB interleaved. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** SHA-256 (hex) of the raw bytes as received (encoded file, or the array's bytes). */
  readonly sha256: string;
  /** Which path produced the pixels: the fast JPEG decoder, sharp, or a uint8 array taken as is. */
  readonly path: "jpeg_fast" | "sharp" | "array";
  readonly source: {
    readonly format: "jpeg" | "png" | "webp" | "array";
    readonly width: number;
    readonly height: number;
  };
}

function sniff(b: Uint8Array): "jpeg" | "png" | "webp" | undefined {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (
    b.length >= 8 &&
    Buffer.from(b.subarray(0, 8)).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  )
    return "png";
  if (
    b.length >= 12 &&
    Buffer.from(b.subarray(0, 4)).toString("latin1") === "RIFF" &&
    Buffer.from(b.subarray(8, 12)).toString("latin1") === "WEBP"
  )
    return "webp";
  return undefined;
}

/**
 * Width and height from a PNG IHDR or a JPEG SOF header, read in JS: saves a round trip to
 * sharp's thread pool on the hot path. Undefined when the header is not that simple (then
 * sharp's metadata() decides, as it does for WebP).
 */
export function headerSize(
  b: Uint8Array,
  format: "jpeg" | "png" | "webp",
): { width: number; height: number } | undefined {
  const u16 = (i: number) => ((b[i] as number) << 8) | (b[i + 1] as number);
  const u32 = (i: number) => u16(i) * 65536 + u16(i + 2);
  if (format === "png") {
    if (b.length < 24 || Buffer.from(b.subarray(12, 16)).toString("latin1") !== "IHDR") return undefined;
    return { width: u32(16), height: u32(20) };
  }
  if (format === "jpeg") {
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return undefined;
      const marker = b[i + 1] as number;
      if (marker === 0xff) {
        i++;
        continue;
      }
      // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: u16(i + 5), width: u16(i + 7) };
      }
      if (marker === 0xd9 || marker === 0xda) return undefined;
      i += 2 + u16(i + 2);
    }
  }
  return undefined;
}

/**
 * SHA-256 (hex), on the event loop. (Hashing large inputs on the thread pool through WebCrypto
 * was tried: it cost 0.1 ms more CPU per 150 KB array than it took off the event loop.)
 */
function sha256(b: Uint8Array): string {
  return hash("sha256", b, "hex");
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";
}

/** Geometry of the centred crop keeping `area` of the image (each side x sqrt(area)). */
export function centerCropBox(
  width: number,
  height: number,
  area: number,
): { left: number; top: number; width: number; height: number } {
  const scale = Math.sqrt(area);
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

export async function prepareImage(
  input: ImageInput,
  spec: ImageSpec,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  jpeg: JpegDecoder = inlineJpegDecoder,
): Promise<PreparedImage> {
  let pipeline: Sharp;
  let source: PreparedImage["source"];
  let hash: string;
  if ("bytes" in input) {
    const bytes = input.bytes;
    if (bytes.byteLength > limits.maxEncodedBytes) {
      throw errors.invalidImage(`The image is ${bytes.byteLength} bytes; the limit is ${limits.maxEncodedBytes}.`);
    }
    const format = sniff(bytes);
    if (format === undefined) throw errors.invalidImage("The image is not JPEG, PNG or WebP.");
    const options: SharpOptions = { limitInputPixels: limits.maxPixels, failOn: "error", sequentialRead: true };
    let size = headerSize(bytes, format);
    if (size === undefined) {
      let meta: Metadata;
      try {
        // Reads the header only: a decompression bomb is refused before any pixel is decoded.
        meta = await sharp(bytes, options).metadata();
      } catch (e) {
        throw errors.invalidImage(`The image header cannot be read: ${message(e)}`);
      }
      size = { width: meta.width ?? 0, height: meta.height ?? 0 };
    }
    const w = size.width;
    const h = size.height;
    if (w < 1 || h < 1) throw errors.invalidImage("The image declares no size.");
    if (w * h > limits.maxPixels) {
      throw errors.invalidImage(`The image declares ${w}x${h} pixels; the limit is ${limits.maxPixels} pixels.`);
    }
    hash = sha256(bytes);
    source = { format, width: w, height: h };
    // A small JPEG already at the model's size (the usual camera frame): the fast decoder (on
    // the decode threads in the app), no libvips pipeline. It declines anything unusual, and
    // sharp decides those below.
    if (format === "jpeg" && w === spec.width && h === spec.height && spec.strategy !== "center-crop") {
      const fast = await jpeg.decode(bytes, w, h);
      if (fast !== undefined) return { data: fast, width: w, height: h, sha256: hash, source, path: "jpeg_fast" };
    }
    pipeline = sharp(bytes, options);
  } else {
    const a = input.array;
    if (a.dtype !== "|u1" || a.shape.length !== 3 || a.shape[2] !== 3) {
      throw errors.invalidImage(
        `An image array must be uint8 with shape [H, W, 3]; got ${a.dtype} [${a.shape.join(", ")}].`,
      );
    }
    const h = a.shape[0] as number;
    const w = a.shape[1] as number;
    if (w < 1 || h < 1) throw errors.invalidImage("The image array is empty.");
    if (w * h > limits.maxPixels) {
      throw errors.invalidImage(`The image array has ${w}x${h} pixels; the limit is ${limits.maxPixels} pixels.`);
    }
    const bytes = a.data as Uint8Array;
    hash = sha256(bytes);
    source = { format: "array", width: w, height: h };
    // Already the model's size (clients usually resize before sending): nothing to resample.
    if (w === spec.width && h === spec.height && spec.strategy !== "center-crop") {
      return { data: bytes, width: w, height: h, sha256: hash, source, path: "array" };
    }
    pipeline = sharp(bytes, { raw: { width: w, height: h, channels: 3 }, limitInputPixels: limits.maxPixels });
  }

  // 3 channels: drop alpha (flattened onto black, as the pixels are premultiplied by nothing
  // else), expand grey to RGB.
  pipeline = pipeline.removeAlpha().toColourspace("srgb");
  // Already the model's size (cameras are often configured to it): decode only, no resampling.
  const atSize = source.width === spec.width && source.height === spec.height && spec.strategy !== "center-crop";
  switch (atSize ? "none" : spec.strategy) {
    case "none":
      break;
    case "resize-naive":
      pipeline = pipeline.resize(spec.width, spec.height, { fit: "fill", kernel: "cubic" });
      break;
    case "letterbox":
      pipeline = pipeline.resize(spec.width, spec.height, {
        fit: "contain",
        position: "centre",
        kernel: "cubic",
        background: { r: 0, g: 0, b: 0, alpha: 1 },
      });
      break;
    case "center-crop": {
      const box = centerCropBox(source.width, source.height, spec.cropArea ?? 0.9);
      pipeline = pipeline.extract(box).resize(spec.width, spec.height, { fit: "fill", kernel: "cubic" });
      break;
    }
  }
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw errors.invalidImage(`The image cannot be decoded: ${message(e)}`);
  }
  if (out.info.channels !== 3 || out.info.width !== spec.width || out.info.height !== spec.height) {
    throw errors.invalidImage(
      `Preprocessing produced ${out.info.width}x${out.info.height}x${out.info.channels}, expected ${spec.width}x${spec.height}x3.`,
    );
  }
  const data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
  return { data, width: spec.width, height: spec.height, sha256: hash, source, path: "sharp" };
}
