import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Frame } from "./render.ts";

/**
 * A small animated GIF89a encoder: one fixed global palette (a 6 x 7 x 6 colour cube, 252
 * entries, plus 4 greys), nearest-level quantization without dithering, LZW with 8-bit codes and
 * a clear code whenever the 12-bit table fills. Enough for episode previews; no dependency.
 * Format: https://www.w3.org/Graphics/GIF/spec-gif89a.txt
 */

const LEVELS_R = 6;
const LEVELS_G = 7;
const LEVELS_B = 6;

/** 256 RGB entries: the colour cube then greys. */
export const PALETTE: Uint8Array = (() => {
  const p = new Uint8Array(256 * 3);
  let i = 0;
  for (let r = 0; r < LEVELS_R; r++) {
    for (let g = 0; g < LEVELS_G; g++) {
      for (let b = 0; b < LEVELS_B; b++, i++) {
        p[i * 3] = Math.round((r * 255) / (LEVELS_R - 1));
        p[i * 3 + 1] = Math.round((g * 255) / (LEVELS_G - 1));
        p[i * 3 + 2] = Math.round((b * 255) / (LEVELS_B - 1));
      }
    }
  }
  for (const v of [64, 96, 160, 192]) {
    p.fill(v, i * 3, i * 3 + 3);
    i++;
  }
  return p;
})();

const levelR = new Uint8Array(256);
const levelG = new Uint8Array(256);
const levelB = new Uint8Array(256);
for (let v = 0; v < 256; v++) {
  levelR[v] = Math.round((v * (LEVELS_R - 1)) / 255);
  levelG[v] = Math.round((v * (LEVELS_G - 1)) / 255);
  levelB[v] = Math.round((v * (LEVELS_B - 1)) / 255);
}

/** Palette indices of a frame (nearest cube level per channel). */
export function quantize(frame: Frame): Uint8Array {
  const { data } = frame;
  const out = new Uint8Array(frame.width * frame.height);
  for (let i = 0, o = 0; o < out.length; i += 3, o++) {
    out[o] =
      ((levelR[data[i] as number] as number) * LEVELS_G + (levelG[data[i + 1] as number] as number)) * LEVELS_B +
      (levelB[data[i + 2] as number] as number);
  }
  return out;
}

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  length = 0;
  byte(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v & 0xff;
  }
  u16(v: number): void {
    this.byte(v);
    this.byte(v >> 8);
  }
  bytes(values: ArrayLike<number>): void {
    for (let i = 0; i < values.length; i++) this.byte(values[i] as number);
  }
  ascii(text: string): void {
    for (let i = 0; i < text.length; i++) this.byte(text.charCodeAt(i));
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** LZW-compresses palette indices (minimum code size 8) into GIF data sub-blocks. */
function lzw(indices: Uint8Array, out: ByteWriter): void {
  const minCodeSize = 8;
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  out.byte(minCodeSize);

  const block = new Uint8Array(255);
  let blockLength = 0;
  let bitBuffer = 0;
  let bitCount = 0;
  const flushBlock = () => {
    if (blockLength === 0) return;
    out.byte(blockLength);
    out.bytes(block.subarray(0, blockLength));
    blockLength = 0;
  };
  let codeSize = minCodeSize + 1;
  const emit = (code: number) => {
    bitBuffer |= code << bitCount;
    bitCount += codeSize;
    while (bitCount >= 8) {
      block[blockLength++] = bitBuffer & 0xff;
      if (blockLength === 255) flushBlock();
      bitBuffer >>>= 8;
      bitCount -= 8;
    }
  };

  // (prefix code << 8 | next index) -> code; a flat table is faster than a Map.
  const table = new Int16Array(4096 * 256).fill(-1);
  let used: number[] = [];
  let nextCode = eoi + 1;
  emit(clear);
  let prefix = indices[0] ?? 0;
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i] as number;
    const key = (prefix << 8) | k;
    const found = table[key] as number;
    if (found >= 0) {
      prefix = found;
      continue;
    }
    emit(prefix);
    if (nextCode < 4096) {
      table[key] = nextCode;
      used.push(key);
      // The decoder widens its code size one code later than the encoder adds it.
      if (nextCode === 1 << codeSize && codeSize < 12) codeSize++;
      nextCode++;
    } else {
      emit(clear);
      for (const u of used) table[u] = -1;
      used = [];
      nextCode = eoi + 1;
      codeSize = minCodeSize + 1;
    }
    prefix = k;
  }
  emit(prefix);
  emit(eoi);
  if (bitCount > 0) {
    block[blockLength++] = bitBuffer & 0xff;
    if (blockLength === 255) flushBlock();
  }
  flushBlock();
  out.byte(0);
}

export type GifOptions = {
  /** Delay between frames in milliseconds (GIF stores hundredths of a second). */
  delayMs?: number;
  /** Loop forever (default true). */
  loop?: boolean;
};

export function encodeGif(frames: readonly Frame[], options: GifOptions = {}): Uint8Array {
  const first = frames[0];
  if (!first) throw new Error("a GIF needs at least one frame");
  const { width, height } = first;
  const out = new ByteWriter();
  out.ascii("GIF89a");
  out.u16(width);
  out.u16(height);
  out.byte(0xf7); // global colour table, 8 bits per primary, 256 entries
  out.byte(0); // background colour index
  out.byte(0); // pixel aspect ratio
  out.bytes(PALETTE);
  if (options.loop ?? true) {
    out.bytes([0x21, 0xff, 0x0b]);
    out.ascii("NETSCAPE2.0");
    out.bytes([0x03, 0x01, 0x00, 0x00, 0x00]);
  }
  const delay = Math.round((options.delayMs ?? 200) / 10);
  for (const frame of frames) {
    if (frame.width !== width || frame.height !== height) throw new Error("all GIF frames must have one size");
    out.bytes([0x21, 0xf9, 0x04, 0x00]);
    out.u16(delay);
    out.bytes([0x00, 0x00]);
    out.byte(0x2c);
    out.u16(0);
    out.u16(0);
    out.u16(width);
    out.u16(height);
    out.byte(0); // no local colour table, not interlaced
    lzw(quantize(frame), out);
  }
  out.byte(0x3b);
  return out.result();
}

/** Writes an animated GIF of frames (an episode's) to `file`, creating its folder. */
export function writeGif(file: string, frames: readonly Frame[], options: GifOptions = {}): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, encodeGif(frames, options));
}
