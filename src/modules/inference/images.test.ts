import { createHash } from "node:crypto";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { centerCropBox, headerSize, type ImageSpec, prepareImage } from "./images.ts";
import type { NdArray } from "./ndarray.ts";

const spec = (strategy: ImageSpec["strategy"], size = 224): ImageSpec => ({ width: size, height: size, strategy });

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : `not-app-error: ${String(e)}`;
  }
  return undefined;
}

/** A width x height RGB image: left half red, right half blue. */
function halves(width: number, height: number): Buffer {
  const b = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (x < width / 2) b[o] = 255;
      else b[o + 2] = 255;
    }
  return b;
}

const pattern32 = () => Buffer.from(Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) & 255));

const px = (d: Uint8Array, w: number, x: number, y: number) => [...d.subarray((y * w + x) * 3, (y * w + x) * 3 + 3)];

let jpeg: Buffer;
let png: Buffer;
let webp: Buffer;
beforeAll(async () => {
  const raw = { raw: { width: 320, height: 240, channels: 3 as const } };
  jpeg = await sharp(halves(320, 240), raw).jpeg({ quality: 95 }).toBuffer();
  png = await sharp(halves(320, 240), raw).png().toBuffer();
  webp = await sharp(halves(320, 240), raw).webp({ lossless: true }).toBuffer();
});

describe("prepareImage", () => {
  it("decodes JPEG, PNG and WebP to 224x224x3 and hashes the raw bytes", async () => {
    for (const [bytes, format] of [
      [jpeg, "jpeg"],
      [png, "png"],
      [webp, "webp"],
    ] as const) {
      const img = await prepareImage({ bytes }, spec("resize-naive"));
      expect(img.data.byteLength).toBe(224 * 224 * 3);
      expect(img.source).toEqual({ format, width: 320, height: 240 });
      expect(img.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
      // Stretched: the colour boundary stays at the horizontal middle.
      expect(px(img.data, 224, 10, 112)[0]).toBeGreaterThan(200);
      expect(px(img.data, 224, 213, 112)[2]).toBeGreaterThan(200);
    }
  });

  it("letterbox keeps the aspect ratio with centred zero padding", async () => {
    const img = await prepareImage({ bytes: png }, spec("letterbox"));
    // 320x240 -> 224x168, padded by 28 rows above and below.
    expect(px(img.data, 224, 112, 5)).toEqual([0, 0, 0]);
    expect(px(img.data, 224, 112, 218)).toEqual([0, 0, 0]);
    expect(px(img.data, 224, 10, 112)).toEqual([255, 0, 0]);
    expect(px(img.data, 224, 213, 112)).toEqual([0, 0, 255]);
  });

  it("center-crop keeps 90% of the area, centred", async () => {
    expect(centerCropBox(224, 224, 0.9)).toEqual({ left: 5, top: 5, width: 213, height: 213 });
    expect(centerCropBox(320, 240, 0.9)).toEqual({ left: 8, top: 6, width: 304, height: 228 });
    // An image with a 6-pixel white frame: the crop removes it entirely.
    const w = 224;
    const b = Buffer.alloc(w * w * 3, 0);
    for (let y = 0; y < w; y++)
      for (let x = 0; x < w; x++)
        if (x < 5 || y < 5 || x >= w - 5 || y >= w - 5) b.fill(255, (y * w + x) * 3, (y * w + x) * 3 + 3);
    const bytes = await sharp(b, { raw: { width: w, height: w, channels: 3 } })
      .png()
      .toBuffer();
    const cropped = await prepareImage({ bytes }, spec("center-crop"));
    expect(cropped.data.reduce((m, v) => Math.max(m, v), 0)).toBeLessThan(10);
    const naive = await prepareImage({ bytes }, spec("resize-naive"));
    expect(naive.data.reduce((m, v) => Math.max(m, v), 0)).toBe(255);
  });

  it("expands grey and drops alpha to 3 channels", async () => {
    const grey = await sharp(Buffer.alloc(30 * 20, 90), { raw: { width: 30, height: 20, channels: 1 } })
      .toColourspace("b-w")
      .png()
      .toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const g = await prepareImage({ bytes: grey }, spec("resize-naive", 16));
    expect(px(g.data, 16, 8, 8)).toEqual([90, 90, 90]);
    const rgba = await sharp({
      create: { width: 30, height: 20, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 1 } },
    })
      .png()
      .toBuffer();
    const a = await prepareImage({ bytes: rgba }, spec("resize-naive", 16));
    expect(a.data.byteLength).toBe(16 * 16 * 3);
    expect(px(a.data, 16, 8, 8)).toEqual([10, 200, 30]);
  });

  it("accepts a uint8 HxWx3 array and hashes its bytes", async () => {
    const data = new Uint8Array(halves(64, 32));
    const arr: NdArray = { dtype: "|u1", shape: [32, 64, 3], data };
    const img = await prepareImage({ array: arr }, spec("resize-naive", 32));
    expect(img.source).toEqual({ format: "array", width: 64, height: 32 });
    expect(img.sha256).toBe(createHash("sha256").update(data).digest("hex"));
    expect(px(img.data, 32, 2, 16)).toEqual([255, 0, 0]);
    // An array already at the model size passes through untouched.
    const exact = new Uint8Array(pattern32());
    const same = await prepareImage(
      { array: { dtype: "|u1", shape: [32, 32, 3], data: exact } },
      spec("resize-naive", 32),
    );
    expect(Buffer.from(same.data).equals(Buffer.from(exact))).toBe(true);
    const bad: NdArray = { dtype: "<f4", shape: [2, 2, 3], data: new Float32Array(12) };
    expect(await codeOf(prepareImage({ array: bad }, spec("resize-naive")))).toBe("invalid_image");
    const fourCh: NdArray = { dtype: "|u1", shape: [2, 2, 4], data: new Uint8Array(16) };
    expect(await codeOf(prepareImage({ array: fourCh }, spec("resize-naive")))).toBe("invalid_image");
    const huge: NdArray = { dtype: "|u1", shape: [5000, 5000, 3], data: new Uint8Array(3) };
    expect(await codeOf(prepareImage({ array: huge }, spec("resize-naive")))).toBe("invalid_image");
  });

  it("rejects corrupt, truncated, unknown and oversize inputs with invalid_image", async () => {
    const cases: Uint8Array[] = [
      jpeg.subarray(0, Math.floor(jpeg.length / 2)),
      png.subarray(0, Math.floor(png.length / 2)),
      png.subarray(0, 30),
      Buffer.concat([jpeg.subarray(0, 200), Buffer.alloc(2000, 0x41)]),
      Buffer.from("GIF89a not supported"),
      Buffer.from("hello"),
      new Uint8Array(0),
    ];
    for (const bytes of cases)
      expect(await codeOf(prepareImage({ bytes }, spec("resize-naive")))).toBe("invalid_image");
    expect(
      await codeOf(prepareImage({ bytes: png }, spec("resize-naive"), { maxEncodedBytes: 100, maxPixels: 1e8 })),
    ).toBe("invalid_image");
  });

  it("refuses a decompression bomb from its header, before decoding", async () => {
    // A valid PNG header declaring 30000x30000 with a tiny (invalid) body: only the header is read.
    const small = await sharp({ create: { width: 1, height: 1, channels: 3, background: "#000" } })
      .png()
      .toBuffer();
    const bomb = Buffer.from(small);
    bomb.writeUInt32BE(30000, 16);
    bomb.writeUInt32BE(30000, 20);
    await expect(prepareImage({ bytes: bomb }, spec("resize-naive"))).rejects.toThrow(/pixels|header/);
    expect(await codeOf(prepareImage({ bytes: bomb }, spec("resize-naive")))).toBe("invalid_image");
    // A genuinely large but valid image is refused by the pixel limit too.
    const big = await sharp({ create: { width: 300, height: 300, channels: 3, background: "#123" } })
      .jpeg()
      .toBuffer();
    expect(
      await codeOf(prepareImage({ bytes: big }, spec("resize-naive"), { maxEncodedBytes: 1e7, maxPixels: 250 * 250 })),
    ).toBe("invalid_image");
    expect(await codeOf(prepareImage({ bytes: big }, spec("resize-naive")))).toBeUndefined();
  });
});

describe("headerSize", () => {
  it("reads JPEG and PNG dimensions as sharp does", async () => {
    const raw = Buffer.alloc(37 * 23 * 3, 7);
    const opts = { raw: { width: 37, height: 23, channels: 3 as const } };
    const jpg = await sharp(raw, opts).jpeg().toBuffer();
    const pngBytes = await sharp(raw, opts).png().toBuffer();
    const progressive = await sharp(raw, opts).jpeg({ progressive: true }).withMetadata().toBuffer();
    expect(headerSize(jpg, "jpeg")).toEqual({ width: 37, height: 23 });
    expect(headerSize(progressive, "jpeg")).toEqual({ width: 37, height: 23 });
    expect(headerSize(pngBytes, "png")).toEqual({ width: 37, height: 23 });
    expect(headerSize(jpg.subarray(0, 4), "jpeg")).toBeUndefined();
    expect(headerSize(Buffer.from([0xff, 0xd8, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]), "jpeg")).toBeUndefined();
  });
});

describe("prepareImage at the model's size", () => {
  it("decodes a model-sized JPEG to the same pixels as resampling it would, and hashes the bytes received", async () => {
    const raw = Buffer.from(Array.from({ length: 224 * 224 * 3 }, (_, i) => (i * 7 + (i >> 9)) & 255));
    const file = await sharp(raw, { raw: { width: 224, height: 224, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const p = await prepareImage({ bytes: file }, spec("resize-naive"));
    const resampled = await sharp(file)
      .removeAlpha()
      .resize(224, 224, { fit: "fill", kernel: "cubic" })
      .raw()
      .toBuffer();
    expect(Buffer.from(p.data).equals(resampled)).toBe(true);
    expect(p.sha256).toBe(createHash("sha256").update(file).digest("hex"));
  });

  it("passes a model-sized uint8 array through untouched, hashed like its bytes", async () => {
    const data = new Uint8Array(224 * 224 * 3).map((_, i) => (i * 13) & 255);
    const a: NdArray = { dtype: "|u1", shape: [224, 224, 3], data };
    const p = await prepareImage({ array: a }, spec("letterbox"));
    expect(p.data).toBe(data);
    expect(p.sha256).toBe(createHash("sha256").update(data).digest("hex"));
  });
});
