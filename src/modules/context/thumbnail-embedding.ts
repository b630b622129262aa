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
  const sums = new Float64Array(n * n);
  const counts = new Float64Array(n * n);
  // Box of each column and row, computed once: pixel x falls into box floor(x * n / width).
  const colBox = new Uint8Array(width);
  for (let x = 0; x < width; x++) colBox[x] = Math.floor((x * n) / width);
  for (let y = 0; y < height; y++) {
    const rowBase = Math.floor((y * n) / height) * n;
    let i = y * width * 3;
    for (let x = 0; x < width; x++, i += 3) {
      const b = rowBase + (colBox[x] as number);
      sums[b] =
        (sums[b] as number) +
        0.299 * (rgb[i] as number) +
        0.587 * (rgb[i + 1] as number) +
        0.114 * (rgb[i + 2] as number);
      counts[b] = (counts[b] as number) + 1;
    }
  }
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
