import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { prepareImage } from "./images.ts";
import { decodeJpegFast, fastJpegEligible, warmFastJpeg } from "./jpeg-fast.ts";
import { JpegDecodePool } from "./jpeg-pool.ts";

const W = 224;
const raw = { raw: { width: W, height: W, channels: 3 as const } };
/** High-frequency content: every DCT coefficient matters, so any decoder difference shows. */
const pattern = Buffer.from(Array.from({ length: W * W * 3 }, (_, i) => (i * 7 + (i >> 9)) & 255));

/** What sharp makes of a file: the reference the fast path must equal. */
const viaSharp = async (b: Uint8Array) => sharp(b).removeAlpha().toColourspace("srgb").raw().toBuffer();

beforeAll(async () => {
  await warmFastJpeg();
});

describe("decodeJpegFast", () => {
  it("decodes baseline, 4:4:4, progressive, mozjpeg-encoded and greyscale files to exactly sharp's pixels", async () => {
    const files = [
      await sharp(pattern, raw).jpeg({ quality: 85 }).toBuffer(),
      await sharp(pattern, raw).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer(),
      await sharp(pattern, raw).jpeg({ quality: 80, progressive: true }).toBuffer(),
      await sharp(pattern, raw).jpeg({ quality: 70, mozjpeg: true }).toBuffer(),
      await sharp(pattern, raw).greyscale().jpeg({ quality: 90 }).toBuffer(),
    ];
    for (const file of files) {
      const fast = decodeJpegFast(file, W, W);
      expect(fast).toBeDefined();
      expect(Buffer.from(fast?.data ?? []).equals(await viaSharp(file))).toBe(true);
    }
  });

  it("declines what it is not sure of: truncated or corrupt data, CMYK, ICC profiles, large or mis-sized frames", async () => {
    const file = await sharp(pattern, raw).jpeg({ quality: 85 }).toBuffer();
    const progressive = await sharp(pattern, raw).jpeg({ quality: 85, progressive: true }).toBuffer();
    const cmyk = await sharp(pattern, raw).toColourspace("cmyk").jpeg().toBuffer();
    const icc = await sharp(pattern, raw).withIccProfile("p3").jpeg().toBuffer();
    const big = await sharp({ create: { width: 600, height: 600, channels: 3, background: "#345" } })
      .jpeg()
      .toBuffer();
    const corrupt = Buffer.from(file);
    corrupt.fill(0xff, 1000, 1200);
    const extraneous = Buffer.from(file);
    for (let i = 400; i < 800; i += 7) extraneous[i] = 0;
    // libjpeg only warns about these (and fills in grey): the fast path must not accept them.
    expect(decodeJpegFast(file.subarray(0, file.length >> 1), W, W)).toBeUndefined();
    expect(decodeJpegFast(progressive.subarray(0, progressive.length >> 1), W, W)).toBeUndefined();
    expect(decodeJpegFast(extraneous, W, W)).toBeUndefined();
    expect(decodeJpegFast(corrupt, W, W)).toBeUndefined();
    expect(fastJpegEligible(cmyk)).toBe(false);
    expect(decodeJpegFast(cmyk, W, W)).toBeUndefined();
    expect(fastJpegEligible(icc)).toBe(false);
    expect(decodeJpegFast(big, 600, 600)).toBeUndefined();
    expect(decodeJpegFast(file, 200, 224)).toBeUndefined();
    expect(fastJpegEligible(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00]))).toBe(false);
    // And after all those errors it still decodes (the instance is replaced after an error).
    await warmFastJpeg();
    let again = decodeJpegFast(file, W, W);
    for (let i = 0; i < 50 && again === undefined; i++) {
      await new Promise((r) => setTimeout(r, 5));
      again = decodeJpegFast(file, W, W);
    }
    expect(Buffer.from(again?.data ?? []).equals(await viaSharp(file))).toBe(true);
  });
});

describe("prepareImage with the fast path", () => {
  const spec = { width: W, height: W, strategy: "resize-naive" as const };
  it("gives the same answer as sharp for files the fast path declines", async () => {
    const file = await sharp(pattern, raw).jpeg({ quality: 85 }).toBuffer();
    // Truncated: refused (sharp fails on truncation), not grey-filled.
    await expect(prepareImage({ bytes: file.subarray(0, file.length >> 1) }, spec)).rejects.toSatisfy(
      (e) => e instanceof AppError && e.code === "invalid_image",
    );
    // CMYK: converted by sharp.
    const cmyk = await sharp(pattern, raw).toColourspace("cmyk").jpeg().toBuffer();
    const p = await prepareImage({ bytes: cmyk }, spec);
    expect(Buffer.from(p.data).equals(await viaSharp(cmyk))).toBe(true);
  });
});

describe("JpegDecodePool", () => {
  it("decodes on a worker thread to sharp's pixels, declines what the fast path declines, and closes", async () => {
    const pool = new JpegDecodePool(1);
    const file = await sharp(pattern, raw).jpeg({ quality: 85 }).toBuffer();
    // Threads start on first use; until one is ready the pool declines (sharp serves).
    expect(pool.decode(file, W, W)).toBeUndefined();
    for (let i = 0; i < 200 && pool.readyThreads === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(pool.readyThreads).toBe(1);
    // A view on a larger buffer: only its own bytes travel.
    const padded = Buffer.concat([Buffer.alloc(100, 7), file, Buffer.alloc(100, 9)]);
    const view = padded.subarray(100, 100 + file.length);
    const results = await Promise.all(Array.from({ length: 8 }, () => pool.decode(view, W, W)));
    for (const r of results) expect(Buffer.from(r ?? []).equals(await viaSharp(file))).toBe(true);
    expect(await pool.decode(file.subarray(0, file.length >> 1), W, W)).toBeUndefined();
    await pool.close();
    expect(pool.readyThreads).toBe(0);
    expect(pool.decode(file, W, W)).toBeUndefined();
  });
});
