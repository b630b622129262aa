import { describe, expect, it } from "vitest";
import { THUMBNAIL_SIDE, thumbnailEmbedding } from "./thumbnail-embedding.ts";

function image(w: number, h: number, f: (x: number, y: number) => [number, number, number]): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.set(f(x, y), (y * w + x) * 3);
  return out;
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * (b[i] as number), 0);

describe("thumbnail-8x8-v1", () => {
  it("64 values, mean zero, unit length", () => {
    const e = thumbnailEmbedding(
      image(224, 224, (x, y) => [x, y, (x + y) % 256]),
      224,
      224,
    );
    expect(e).toHaveLength(THUMBNAIL_SIDE * THUMBNAIL_SIDE);
    expect(Math.abs(e.reduce((s, v) => s + v, 0))).toBeLessThan(1e-5);
    expect(dot(e, e)).toBeCloseTo(1, 5);
  });

  it("is deterministic, and brightness or contrast changes leave it unchanged", () => {
    const a = image(64, 48, (x, y) => [x * 3, y * 4, 10]);
    const brighter = image(64, 48, (x, y) => [x * 3 + 20, y * 4 + 20, 30]);
    const e = thumbnailEmbedding(a, 64, 48);
    expect(thumbnailEmbedding(a, 64, 48)).toEqual(e);
    expect(dot(e, thumbnailEmbedding(brighter, 64, 48))).toBeCloseTo(1, 5);
  });

  it("a left-right gradient and its mirror point opposite ways; a uniform image is all zeros", () => {
    const left = thumbnailEmbedding(
      image(32, 32, (x) => [x * 8, x * 8, x * 8]),
      32,
      32,
    );
    const right = thumbnailEmbedding(
      image(32, 32, (x) => [255 - x * 8, 255 - x * 8, 255 - x * 8]),
      32,
      32,
    );
    expect(dot(left, right)).toBeCloseTo(-1, 5);
    // The box means, before normalization, grow left to right.
    expect(left[0]).toBeLessThan(left[7] as number);
    expect(
      [
        ...thumbnailEmbedding(
          image(16, 16, () => [9, 9, 9]),
          16,
          16,
        ),
      ].every((v) => v === 0),
    ).toBe(true);
  });

  it("images smaller than 8x8 still give 64 finite values; short buffers are refused", () => {
    const e = thumbnailEmbedding(
      image(3, 2, (x, y) => [x * 80, y * 80, 0]),
      3,
      2,
    );
    expect([...e].every(Number.isFinite)).toBe(true);
    expect(() => thumbnailEmbedding(new Uint8Array(10), 4, 4)).toThrow(/do not hold/);
  });
});
