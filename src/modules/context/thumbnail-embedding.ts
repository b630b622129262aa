/**
 * `thumbnail-8x8-v1`: a small deterministic image descriptor, NOT a learned embedding. The
 * decoded RGB pixels the model received (after its resize, so it follows the model's
 * preprocessing) are reduced to an 8x8 grayscale thumbnail by averaging equal-area boxes
 * (BT.601 luma: 0.299 R + 0.587 G + 0.114 B), then mean-centred and L2-normalized: 64 float32
 * values whose dot product is the cosine similarity of two thumbnails. It finds near-duplicate
 * frames and coarse scene changes; it knows nothing about what the image shows. A uniform image
 * (every box equal) gives 64 zeros.
 */
export const THUMBNAIL_EMBEDDING_KIND = "thumbnail-8x8-v1";
export const THUMBNAIL_SIDE = 8;

/** `rgb` is width x height x 3 bytes, row-major, RGB interleaved. */
export function thumbnailEmbedding(rgb: Uint8Array, width: number, height: number): Float32Array {
  if (width < 1 || height < 1 || rgb.length < width * height * 3) {
    throw new Error(`thumbnail: ${rgb.length} bytes do not hold ${width}x${height}x3`);
  }
  const n = THUMBNAIL_SIDE;
  // Per box: integer channel sums (exact, no float work per pixel) and pixel counts.
  const r = new Float64Array(n * n);
  const g = new Float64Array(n * n);
  const bl = new Float64Array(n * n);
  const counts = new Float64Array(n * n);
  // Pixel x falls into box floor(x * n / width): box bx covers [start[bx], start[bx + 1]).
  const start = new Int32Array(n + 1);
  for (let bx = 0; bx <= n; bx++) start[bx] = Math.ceil((bx * width) / n);
  for (let y = 0; y < height; y++) {
    const rowBox = Math.floor((y * n) / height) * n;
    const rowStart = y * width * 3;
    for (let bx = 0; bx < n; bx++) {
      const x0 = start[bx] as number;
      const x1 = start[bx + 1] as number;
      if (x1 <= x0) continue;
      let sr = 0;
      let sg = 0;
      let sb = 0;
      for (let i = rowStart + x0 * 3, end = rowStart + x1 * 3; i < end; i += 3) {
        sr += rgb[i] as number;
        sg += rgb[i + 1] as number;
        sb += rgb[i + 2] as number;
      }
      const box = rowBox + bx;
      r[box] = (r[box] as number) + sr;
      g[box] = (g[box] as number) + sg;
      bl[box] = (bl[box] as number) + sb;
      counts[box] = (counts[box] as number) + (x1 - x0);
    }
  }
  const sums = new Float64Array(n * n);
  for (let b = 0; b < n * n; b++)
    sums[b] = 0.299 * (r[b] as number) + 0.587 * (g[b] as number) + 0.114 * (bl[b] as number);
  const v = new Float64Array(n * n);
  let mean = 0;
  for (let b = 0; b < n * n; b++) {
    const c = counts[b] as number;
    // An image smaller than 8 pixels on a side leaves some boxes empty: they take the mean below.
    v[b] = c === 0 ? Number.NaN : (sums[b] as number) / c;
  }
  let filled = 0;
  for (const x of v) {
    if (!Number.isNaN(x)) {
      mean += x;
      filled++;
    }
  }
  mean /= filled;
  let norm = 0;
  for (let b = 0; b < n * n; b++) {
    const d = Number.isNaN(v[b] as number) ? 0 : (v[b] as number) - mean;
    v[b] = d;
    norm += d * d;
  }
  const out = new Float32Array(n * n);
  if (norm === 0) return out;
  const inv = 1 / Math.sqrt(norm);
  for (let b = 0; b < n * n; b++) out[b] = (v[b] as number) * inv;
  return out;
}
