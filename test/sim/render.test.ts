import sharp from "sharp";
import { describe, expect, it } from "vitest";
import {
  Camera,
  DEFAULT_LIGHTING,
  encodeJpeg,
  encodePngStrip,
  FRAME_SIZE,
  type Frame,
  GRIPPER_GEOMETRY,
  PALM_CLOSED_EMPTY_RGB,
  PALM_HOLDING_RGB,
  randomLighting,
  render,
} from "../../sim/render.ts";
import { BLOCK_SIZE, type Block, type Colour, createScene, type Scene, step, type Vec3 } from "../../sim/scene.ts";

const HALF = BLOCK_SIZE / 2;
const camera = new Camera();

function pixelAt(frame: Frame, p: Vec3): [number, number, number] {
  const q = camera.project(p);
  const x = Math.floor(q.x);
  const y = Math.floor(q.y);
  expect(x >= 0 && x < frame.width && y >= 0 && y < frame.height).toBe(true);
  const o = (y * frame.width + x) * 3;
  return [frame.data[o] as number, frame.data[o + 1] as number, frame.data[o + 2] as number];
}

const hue: Record<Colour, (p: [number, number, number]) => boolean> = {
  red: ([r, g, b]) => r > 120 && r > 2 * g && r > 2 * b,
  green: ([r, g, b]) => g > 100 && g > 1.5 * r && g > 1.5 * b,
  blue: ([r, g, b]) => b > 100 && b > 1.5 * r && b > 1.5 * g,
  yellow: ([r, g, b]) => r > 120 && g > 100 && r > 2 * b && g > 2 * b,
};
const isFinger = ([r, g, b]: [number, number, number]) => r > 140 && Math.abs(r - g) < 12 && Math.abs(b - r) < 25;
const isTable = ([r, g, b]: [number, number, number]) => r > 120 && r > g && g > b && r - b > 30;

/** A four-block scene with the gripper parked high at the back left, away from the blocks. */
function fourBlocks(seed = 2): Scene {
  const scene = createScene(seed, { blocks: 4 });
  scene.ee = { x: -0.2, y: 0.17, z: 0.18 };
  return scene;
}

/** The gripper alone over the table (no blocks to hide or be hidden). */
function gripperAt(scene: Scene, x: number, y: number, z: number, gripper = 1): Scene {
  scene.blocks = [];
  scene.ee = { x, y, z };
  scene.gripper = gripper;
  return scene;
}

function fingerCentre(scene: Scene, side: -1 | 1, open: boolean): Vec3 {
  const g = GRIPPER_GEOMETRY;
  const dx = open ? g.fingerOpenX : g.fingerClosedX;
  return { x: scene.ee.x + side * dx, y: scene.ee.y - g.finger.hy, z: scene.ee.z + g.finger.bottom + g.finger.hz };
}

describe("render", () => {
  it("renders 224x224 RGB, the same bytes for the same scene and options", () => {
    const a = render(fourBlocks(), { noise: { sigma: 5, seed: 9 } });
    const b = render(fourBlocks(), { noise: { sigma: 5, seed: 9 } });
    expect(a.width).toBe(FRAME_SIZE);
    expect(a.height).toBe(FRAME_SIZE);
    expect(a.data).toHaveLength(224 * 224 * 3);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
    const c = render(fourBlocks(), { noise: { sigma: 5, seed: 10 } });
    expect(Buffer.from(a.data).equals(Buffer.from(c.data))).toBe(false);
  });

  it("draws each block in its colour where the camera projects its top", () => {
    for (const seed of [2, 5, 8]) {
      const scene = fourBlocks(seed);
      const frame = render(scene);
      for (const block of scene.blocks) {
        const p = pixelAt(frame, { x: block.pos.x, y: block.pos.y, z: block.pos.z + HALF });
        expect(hue[block.colour](p), `${block.colour} at ${p}`).toBe(true);
        for (const other of scene.blocks.filter((b) => b !== block)) expect(hue[other.colour](p)).toBe(false);
      }
    }
  });

  it("draws the gripper where it is, and it moves in the image when it moves in the world", () => {
    const left = gripperAt(createScene(4), -0.12, 0, 0.08);
    const right = gripperAt(createScene(4), 0.12, 0, 0.08);
    const leftFrame = render(left);
    const rightFrame = render(right);
    const leftFinger = fingerCentre(left, -1, true);
    expect(isFinger(pixelAt(leftFrame, leftFinger))).toBe(true);
    expect(isFinger(pixelAt(leftFrame, fingerCentre(left, 1, true)))).toBe(true);
    expect(isFinger(pixelAt(rightFrame, fingerCentre(right, 1, true)))).toBe(true);
    // Where the left gripper's finger was, the right frame shows table.
    expect(isTable(pixelAt(rightFrame, leftFinger))).toBe(true);
  });

  it("shows the height: the gripper rises in the image while its shadow stays on the table", () => {
    const low = gripperAt(createScene(6), 0, 0.05, 0.04);
    const high = gripperAt(createScene(6), 0, 0.05, 0.16);
    const lowFrame = render(low);
    const highFrame = render(high);
    expect(isFinger(pixelAt(lowFrame, fingerCentre(low, -1, true)))).toBe(true);
    expect(isFinger(pixelAt(highFrame, fingerCentre(high, -1, true)))).toBe(true);
    const rise = camera.project(fingerCentre(low, -1, true)).y - camera.project(fingerCentre(high, -1, true)).y;
    expect(rise).toBeGreaterThan(20);
    // The shadow straight below the TCP, on the table, in both frames; plain table without a gripper.
    const shadowPoint = { x: 0, y: 0.05, z: 0 };
    const empty = render(gripperAt(createScene(6), 0.2, -0.15, 0.04));
    const table = pixelAt(empty, shadowPoint);
    expect(isTable(table)).toBe(true);
    for (const frame of [highFrame]) {
      const shadow = pixelAt(frame, shadowPoint);
      expect(shadow[0]).toBeLessThan(table[0] * 0.6);
    }
  });

  it("is upright: right in the world is right in the image, forward is up, higher is up (no projection used)", () => {
    /** Centroid (column, row) of the red pixels of a frame. */
    const redCentroid = (frame: Frame) => {
      let n = 0;
      let cx = 0;
      let cy = 0;
      for (let row = 0; row < frame.height; row++) {
        for (let col = 0; col < frame.width; col++) {
          const o = (row * frame.width + col) * 3;
          const p: [number, number, number] = [
            frame.data[o] as number,
            frame.data[o + 1] as number,
            frame.data[o + 2] as number,
          ];
          if (hue.red(p)) {
            n++;
            cx += col;
            cy += row;
          }
        }
      }
      expect(n).toBeGreaterThan(50);
      return { col: cx / n, row: cy / n };
    };
    const redAt = (x: number, y: number, z: number) => {
      const scene = gripperAt(createScene(1), 0.2, 0.17, 0.2);
      scene.blocks = [{ colour: "red", pos: { x, y, z } }];
      return redCentroid(render(scene));
    };
    const centre = redAt(0, 0, HALF);
    const right = redAt(0.1, 0, HALF);
    const forward = redAt(0, 0.1, HALF);
    const up = redAt(0, 0, HALF + 0.1);
    expect(centre.col).toBeGreaterThan(100);
    expect(centre.col).toBeLessThan(124);
    expect(right.col).toBeGreaterThan(centre.col + 20);
    expect(Math.abs(right.row - centre.row)).toBeLessThan(5);
    expect(forward.row).toBeLessThan(centre.row - 10);
    expect(up.row).toBeLessThan(centre.row - 12);
  });

  it("shows whether the gripper is open or closed", () => {
    const open = gripperAt(createScene(4), 0, 0.05, 0.1, 1);
    const closed = gripperAt(createScene(4), 0, 0.05, 0.1, 0);
    const openFinger = fingerCentre(open, 1, true);
    expect(isFinger(pixelAt(render(open), openFinger))).toBe(true);
    expect(isFinger(pixelAt(render(closed), openFinger))).toBe(false);
    expect(isFinger(pixelAt(render(closed), fingerCentre(closed, 1, false)))).toBe(true);
  });

  it("lights the palm by the gripper's state: dark open, magenta closed on nothing, white holding", () => {
    const palmTop = (scene: Scene) => {
      const g = GRIPPER_GEOMETRY;
      const z = scene.ee.z + g.finger.bottom + 2 * g.finger.hz + 2 * g.palm.hz;
      return pixelAt(render(scene), { x: scene.ee.x + g.palm.hx / 2, y: scene.ee.y, z });
    };
    const open = palmTop(gripperAt(createScene(4), 0, 0.05, 0.1, 1));
    const empty = palmTop(gripperAt(createScene(4), 0, 0.05, 0.1, 0));
    expect(open[0]).toBeLessThan(110);
    expect(empty[0]).toBeGreaterThan(150);
    expect(empty[1]).toBeLessThan(90);
    expect(empty[2]).toBeGreaterThan(150);
    // Close on a block (the TCP at its centre), then lift it: the light turns white.
    const scene = createScene(4);
    const block = scene.blocks[0] as Block;
    scene.ee = { ...block.pos };
    step(scene, [0, 0, 0, 0, 0, 0, 0]);
    expect(scene.held).toBe(0);
    step(scene, [0, 0, 0.03, 0, 0, 0, 0]);
    const holding = palmTop(scene);
    expect(Math.min(...holding)).toBeGreaterThan(170);
    // Equal red and blue: a red/blue swap leaves the light as it is.
    expect(PALM_CLOSED_EMPTY_RGB[0]).toBe(PALM_CLOSED_EMPTY_RGB[2]);
    expect(PALM_HOLDING_RGB[0]).toBe(PALM_HOLDING_RGB[2]);
  });

  it("changes brightness with the lighting, and random lighting is seeded", () => {
    const mean = (f: Frame) => f.data.reduce((a, b) => a + b, 0) / f.data.length;
    const nominal = mean(render(fourBlocks()));
    const dim = mean(render(fourBlocks(), { lighting: { ...DEFAULT_LIGHTING, brightness: 0.7 } }));
    expect(dim).toBeLessThan(nominal * 0.8);
    expect(randomLighting(3)).toEqual(randomLighting(3));
    expect(randomLighting(3)).not.toEqual(randomLighting(4));
  });

  it("adds sensor noise of about the requested size", () => {
    const clean = render(fourBlocks());
    const noisy = render(fourBlocks(), { noise: { sigma: 8, seed: 1 } });
    let sum = 0;
    for (let i = 0; i < clean.data.length; i++) sum += Math.abs((clean.data[i] as number) - (noisy.data[i] as number));
    const meanAbs = sum / clean.data.length;
    // E|N(0, 8)| = 6.4; clipping at 0/255 and rounding keep it near.
    expect(meanAbs).toBeGreaterThan(5);
    expect(meanAbs).toBeLessThan(7.5);
  });

  it("encodes a frame as JPEG that decodes to the same picture", async () => {
    const scene = fourBlocks();
    const frame = render(scene);
    const jpeg = await encodeJpeg(frame);
    expect(jpeg.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([224, 224, 3]);
    const decoded: Frame = { width: 224, height: 224, data: new Uint8Array(data) };
    for (const block of scene.blocks) {
      expect(hue[block.colour](pixelAt(decoded, { ...block.pos, z: block.pos.z + HALF }))).toBe(true);
    }
  });

  it("writes frames side by side as a PNG strip", async () => {
    const png = await encodePngStrip([render(fourBlocks(2)), render(fourBlocks(3))]);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 448, 224]);
  });
});
