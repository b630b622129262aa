import sharp from "sharp";

/** A deterministic w x h RGB pattern (varies with `seed`), as raw bytes. */
export function pattern(w: number, h: number, seed: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      b[o] = (x * (seed + 3) + y * 7) & 255;
      b[o + 1] = (y * (seed + 5) + seed * 31) & 255;
      b[o + 2] = ((x ^ y) * (seed + 1)) & 255;
    }
  return b;
}

export async function png(w: number, h: number, seed: number): Promise<Buffer> {
  return sharp(pattern(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

export async function jpeg(w: number, h: number, seed: number): Promise<Buffer> {
  return sharp(pattern(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}
