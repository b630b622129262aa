import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";

export const SAMPLE_FRAME_NAME = "sample-frame.jpg";
const SIZE = 224;

/**
 * A 224x224 camera-like JPEG for the first-run `curl`: a table top (a soft gradient) with a red
 * cup and a blue block on it. Synthetic, so nothing has to be shipped; the demo model takes any
 * real JPEG, this one just looks like what a robot would send.
 */
export async function sampleFrame(): Promise<Buffer> {
  const px = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const i = (y * SIZE + x) * 3;
      const table = y > 80;
      let r = table ? 150 + (y >> 2) : 200 - (y >> 1);
      let g = table ? 120 + (y >> 3) : 210 - (y >> 1);
      let b = table ? 90 : 225 - (x >> 3);
      const cup = (x - 80) ** 2 / 22 ** 2 + (y - 140) ** 2 / 30 ** 2 <= 1;
      const block = x >= 140 && x < 180 && y >= 130 && y < 170;
      if (cup) [r, g, b] = [200, 30 + (x & 15), 35];
      else if (block) [r, g, b] = [40, 70, 190 + ((x + y) & 31)];
      px[i] = r;
      px[i + 1] = g;
      px[i + 2] = b;
    }
  }
  return sharp(px, { raw: { width: SIZE, height: SIZE, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

/** Writes the sample frame into `dataDir` and returns its absolute path. */
export async function writeSampleFrame(dataDir: string): Promise<string> {
  const dir = path.resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, SAMPLE_FRAME_NAME);
  await writeFile(file, await sampleFrame());
  return file;
}
