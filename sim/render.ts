import sharp from "sharp";
import { createRng, deriveSeed } from "./rng.ts";
import { BLOCK_SIZE, type Colour, isOpen, type Scene, supportUnder, TABLE, type Vec3 } from "./scene.ts";

/**
 * A fixed oblique camera and a small software rasterizer: every object is a box, drawn face by
 * face (back faces culled, one flat shade per face) in painter's order (farthest box first), with
 * vertical drop shadows under the gripper and a held block so the height is visible in the image.
 * Frames are RGB uint8, row-major HWC, row 0 at the top (what a camera driver and OpenVLA expect).
 *
 * The palm carries the gripper's status light, as real grippers report their state (a Robotiq
 * 2F's object detection, for one): dark while open, magenta when closed on nothing, white when
 * closed on an object. Without it the state is invisible at the moment that matters: a gripper
 * open around a block and one closed on it differ by fingers hidden behind the block. The colours
 * have equal red and blue, so they are unchanged by a red/blue channel swap and never look like
 * a block.
 */

export type Frame = { width: number; height: number; data: Uint8Array };

export type Lighting = {
  /** Multiplies every colour (1 = nominal). */
  brightness: number;
  /** Share of light that does not depend on the face's orientation (0..1). */
  ambient: number;
  /** Direction towards the light, in the scene frame (normalized on use). */
  direction: readonly [number, number, number];
  /** Per-channel colour of the light (1, 1, 1 = white). */
  tint: readonly [number, number, number];
};

export const DEFAULT_LIGHTING: Lighting = {
  brightness: 1,
  ambient: 0.45,
  direction: [-0.4, -0.6, 1],
  tint: [1, 1, 1],
};

export type RenderOptions = {
  width?: number;
  height?: number;
  lighting?: Lighting;
  /** Gaussian sensor noise with this standard deviation (in 0..255 units), seeded. */
  noise?: { sigma: number; seed: number };
};

export const FRAME_SIZE = 224;

/** Camera pose in the scene frame (documented in docs/sim.md). */
export const CAMERA = {
  position: { x: 0, y: -0.42, z: 0.78 },
  target: { x: 0, y: 0, z: 0.05 },
  /** Vertical field of view in degrees. */
  fov: 38,
} as const;

export const BLOCK_RGB: Record<Colour, readonly [number, number, number]> = {
  red: [210, 35, 35],
  green: [40, 175, 60],
  blue: [40, 80, 215],
  yellow: [230, 205, 40],
};
const TABLE_RGB = [176, 150, 118] as const;
const WALL_RGB = [92, 96, 108] as const;
const FLOOR_RGB = [58, 60, 66] as const;
const GRIPPER_RGB = [70, 72, 80] as const;
const FINGER_RGB = [200, 202, 212] as const;
/** The palm's status light: closed on nothing, closed holding a block (open: GRIPPER_RGB). */
export const PALM_CLOSED_EMPTY_RGB = [205, 50, 205] as const;
export const PALM_HOLDING_RGB = [240, 240, 240] as const;
const SHADOW = 0.45;

/** Gripper geometry relative to the TCP (metres). */
export const GRIPPER_GEOMETRY = {
  finger: { hx: 0.005, hy: 0.012, hz: 0.024, bottom: -0.012 },
  fingerOpenX: 0.044,
  fingerClosedX: 0.007,
  palm: { hx: 0.054, hy: 0.016, hz: 0.008 },
  wrist: { hx: 0.012, hy: 0.012, hz: 0.12 },
} as const;

type Rgb = readonly [number, number, number];
type Box = { c: Vec3; hx: number; hy: number; hz: number; rgb: Rgb; depth: number };
type Shadow = { c: Vec3; hx: number; hy: number; depth: number };

/** A pinhole camera: scene point -> pixel (x right, y down), with the point's depth. */
export class Camera {
  readonly width: number;
  readonly height: number;
  private readonly pos: Vec3;
  private readonly r: Vec3;
  private readonly u: Vec3;
  private readonly f: Vec3;
  private readonly focal: number;

  constructor(width = FRAME_SIZE, height = FRAME_SIZE) {
    this.width = width;
    this.height = height;
    const p = CAMERA.position;
    const t = CAMERA.target;
    this.pos = p;
    this.f = normalize({ x: t.x - p.x, y: t.y - p.y, z: t.z - p.z });
    this.r = normalize(cross(this.f, { x: 0, y: 0, z: 1 }));
    this.u = cross(this.r, this.f);
    this.focal = height / 2 / Math.tan((CAMERA.fov * Math.PI) / 360);
  }

  /** Pixel coordinates (continuous; pixel (i, j) covers [i, i+1) x [j, j+1)) and depth. */
  project(p: Vec3): { x: number; y: number; depth: number } {
    const dx = p.x - this.pos.x;
    const dy = p.y - this.pos.y;
    const dz = p.z - this.pos.z;
    const xc = dx * this.r.x + dy * this.r.y + dz * this.r.z;
    const yc = dx * this.u.x + dy * this.u.y + dz * this.u.z;
    const zc = dx * this.f.x + dy * this.f.y + dz * this.f.z;
    return { x: this.width / 2 + (this.focal * xc) / zc, y: this.height / 2 - (this.focal * yc) / zc, depth: zc };
  }

  distance(p: Vec3): number {
    return Math.hypot(p.x - this.pos.x, p.y - this.pos.y, p.z - this.pos.z);
  }

  /** Whether the face with outward normal `n` through point `p` faces the camera. */
  faces(p: Vec3, n: Vec3): boolean {
    return (p.x - this.pos.x) * n.x + (p.y - this.pos.y) * n.y + (p.z - this.pos.z) * n.z < 0;
  }
}

function normalize(v: Vec3): Vec3 {
  const l = Math.hypot(v.x, v.y, v.z);
  return { x: v.x / l, y: v.y / l, z: v.z / l };
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return { x: a.y * b.z - a.z * b.y, y: a.z * b.x - a.x * b.z, z: a.x * b.y - a.y * b.x };
}

const cameras = new Map<string, Camera>();
function cameraFor(width: number, height: number): Camera {
  const key = `${width}x${height}`;
  let camera = cameras.get(key);
  if (!camera) {
    camera = new Camera(width, height);
    cameras.set(key, camera);
  }
  return camera;
}

/** Fills a convex polygon (xs/ys in pixels) with a colour, or darkens under it (`rgb` null). */
function fillConvex(frame: Frame, xs: number[], ys: number[], rgb: Rgb | null): void {
  const { width, height, data } = frame;
  const n = xs.length;
  let minY = Number.POSITIVE_INFINITY;
  let maxY = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const y = ys[i] as number;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
  }
  const rowStart = Math.max(0, Math.ceil(minY - 0.5));
  const rowEnd = Math.min(height - 1, Math.floor(maxY - 0.5));
  for (let row = rowStart; row <= rowEnd; row++) {
    const yc = row + 0.5;
    let left = Number.POSITIVE_INFINITY;
    let right = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const j = i + 1 === n ? 0 : i + 1;
      const y0 = ys[i] as number;
      const y1 = ys[j] as number;
      if ((y0 <= yc && y1 > yc) || (y1 <= yc && y0 > yc)) {
        const x0 = xs[i] as number;
        const x = x0 + ((yc - y0) * ((xs[j] as number) - x0)) / (y1 - y0);
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
    if (left > right) continue;
    const c0 = Math.max(0, Math.ceil(left - 0.5));
    const c1 = Math.min(width - 1, Math.floor(right - 0.5));
    let o = (row * width + c0) * 3;
    if (rgb) {
      const [r, g, b] = rgb;
      for (let c = c0; c <= c1; c++, o += 3) {
        data[o] = r;
        data[o + 1] = g;
        data[o + 2] = b;
      }
    } else {
      for (let c = c0; c <= c1; c++, o += 3) {
        data[o] = (data[o] as number) * SHADOW;
        data[o + 1] = (data[o + 1] as number) * SHADOW;
        data[o + 2] = (data[o + 2] as number) * SHADOW;
      }
    }
  }
}

const NORMALS: readonly Vec3[] = [
  { x: 1, y: 0, z: 0 },
  { x: -1, y: 0, z: 0 },
  { x: 0, y: 1, z: 0 },
  { x: 0, y: -1, z: 0 },
  { x: 0, y: 0, z: 1 },
  { x: 0, y: 0, z: -1 },
];

/** Corner signs of each face (matching NORMALS), counter-clockwise seen from outside. */
const FACE_CORNERS: readonly (readonly (readonly [number, number, number])[])[] = [
  [
    [1, -1, -1],
    [1, 1, -1],
    [1, 1, 1],
    [1, -1, 1],
  ],
  [
    [-1, 1, -1],
    [-1, -1, -1],
    [-1, -1, 1],
    [-1, 1, 1],
  ],
  [
    [1, 1, -1],
    [-1, 1, -1],
    [-1, 1, 1],
    [1, 1, 1],
  ],
  [
    [-1, -1, -1],
    [1, -1, -1],
    [1, -1, 1],
    [-1, -1, 1],
  ],
  [
    [-1, -1, 1],
    [1, -1, 1],
    [1, 1, 1],
    [-1, 1, 1],
  ],
  [
    [-1, 1, -1],
    [1, 1, -1],
    [1, -1, -1],
    [-1, -1, -1],
  ],
];

function faceShades(lighting: Lighting): number[] {
  const l = normalize({ x: lighting.direction[0], y: lighting.direction[1], z: lighting.direction[2] });
  return NORMALS.map(
    (n) =>
      lighting.brightness *
      (lighting.ambient + (1 - lighting.ambient) * Math.max(0, n.x * l.x + n.y * l.y + n.z * l.z)),
  );
}

function shade(rgb: Rgb, s: number, tint: Lighting["tint"]): Rgb {
  const c = (v: number, t: number) => Math.max(0, Math.min(255, Math.round(v * s * t)));
  return [c(rgb[0], tint[0]), c(rgb[1], tint[1]), c(rgb[2], tint[2])];
}

function drawBox(frame: Frame, camera: Camera, box: Box, shades: number[], tint: Lighting["tint"]): void {
  const xs = [0, 0, 0, 0];
  const ys = [0, 0, 0, 0];
  for (let f = 0; f < 6; f++) {
    const n = NORMALS[f] as Vec3;
    const faceCentre = { x: box.c.x + n.x * box.hx, y: box.c.y + n.y * box.hy, z: box.c.z + n.z * box.hz };
    if (!camera.faces(faceCentre, n)) continue;
    const corners = FACE_CORNERS[f] as (readonly [number, number, number])[];
    for (let k = 0; k < 4; k++) {
      const [sx, sy, sz] = corners[k] as readonly [number, number, number];
      const p = camera.project({ x: box.c.x + sx * box.hx, y: box.c.y + sy * box.hy, z: box.c.z + sz * box.hz });
      xs[k] = p.x;
      ys[k] = p.y;
    }
    fillConvex(frame, xs, ys, shade(box.rgb, shades[f] as number, tint));
  }
}

function drawShadow(frame: Frame, camera: Camera, s: Shadow): void {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const [sx, sy] of [
    [-1, -1],
    [1, -1],
    [1, 1],
    [-1, 1],
  ] as const) {
    const p = camera.project({ x: s.c.x + sx * s.hx, y: s.c.y + sy * s.hy, z: s.c.z });
    xs.push(p.x);
    ys.push(p.y);
  }
  fillConvex(frame, xs, ys, null);
}

const backgrounds = new Map<string, Uint8Array>();
function background(camera: Camera, lighting: Lighting): Uint8Array {
  const key = `${camera.width}x${camera.height}:${lighting.brightness}:${lighting.tint.join(",")}`;
  let bg = backgrounds.get(key);
  if (bg) return bg;
  const { width, height } = camera;
  bg = new Uint8Array(width * height * 3);
  // Where the horizon of the table plane at the back edge lands: wall above, floor below.
  const horizon = camera.project({ x: 0, y: TABLE.yMax + 0.3, z: -0.05 }).y;
  for (let row = 0; row < height; row++) {
    const base = row < horizon ? WALL_RGB : FLOOR_RGB;
    const fade = 1 - (0.15 * row) / height;
    const rgb = shade(base, lighting.brightness * fade, lighting.tint);
    const start = row * width * 3;
    bg.set(rgb, start);
    for (let filled = 3; filled < width * 3; filled *= 2) {
      bg.copyWithin(start + filled, start, start + Math.min(filled, width * 3 - filled));
    }
  }
  if (backgrounds.size > 64) backgrounds.clear();
  backgrounds.set(key, bg);
  return bg;
}

/** The boxes that make up the gripper at its current state. */
export function gripperBoxes(scene: Scene): { c: Vec3; hx: number; hy: number; hz: number; rgb: Rgb }[] {
  const g = GRIPPER_GEOMETRY;
  const { x, y, z } = scene.ee;
  const fingerX = isOpen(scene.gripper)
    ? g.fingerOpenX
    : scene.held >= 0
      ? BLOCK_SIZE / 2 + g.finger.hx
      : g.fingerClosedX;
  const fingerZ = z + g.finger.bottom + g.finger.hz;
  const palmZ = fingerZ + g.finger.hz + g.palm.hz;
  const wristZ = palmZ + g.palm.hz + g.wrist.hz;
  return [
    { c: { x: x - fingerX, y, z: fingerZ }, ...g.finger, rgb: FINGER_RGB },
    { c: { x: x + fingerX, y, z: fingerZ }, ...g.finger, rgb: FINGER_RGB },
    {
      c: { x, y, z: palmZ },
      ...g.palm,
      rgb: isOpen(scene.gripper) ? GRIPPER_RGB : scene.held >= 0 ? PALM_HOLDING_RGB : PALM_CLOSED_EMPTY_RGB,
    },
    { c: { x, y, z: wristZ }, ...g.wrist, rgb: GRIPPER_RGB },
  ];
}

/** Renders the scene into a new frame (or into `into`, reused). */
export function render(scene: Scene, options: RenderOptions = {}, into?: Frame): Frame {
  const width = options.width ?? FRAME_SIZE;
  const height = options.height ?? FRAME_SIZE;
  const lighting = options.lighting ?? DEFAULT_LIGHTING;
  const camera = cameraFor(width, height);
  const frame =
    into && into.width === width && into.height === height
      ? into
      : { width, height, data: new Uint8Array(width * height * 3) };
  frame.data.set(background(camera, lighting));
  const shades = faceShades(lighting);

  const tableHalfX = (TABLE.xMax - TABLE.xMin) / 2;
  const tableHalfY = (TABLE.yMax - TABLE.yMin) / 2;
  drawBox(
    frame,
    camera,
    {
      c: { x: (TABLE.xMax + TABLE.xMin) / 2, y: (TABLE.yMax + TABLE.yMin) / 2, z: -0.02 },
      hx: tableHalfX,
      hy: tableHalfY,
      hz: 0.02,
      rgb: TABLE_RGB,
      depth: 0,
    },
    shades,
    lighting.tint,
  );

  const half = BLOCK_SIZE / 2;
  const boxes: Box[] = scene.blocks.map((b) => ({
    c: b.pos,
    hx: half,
    hy: half,
    hz: half,
    rgb: BLOCK_RGB[b.colour],
    depth: camera.distance(b.pos),
  }));
  for (const part of gripperBoxes(scene)) boxes.push({ ...part, depth: camera.distance(part.c) });

  // Drop shadows straight down onto the table or the block top below (under the gripper's palm,
  // and under a held block), each drawn right after the surface it falls on.
  const shadowAt = (x: number, y: number, lowest: number, hx: number, hy: number): Shadow => {
    const support = supportUnder(scene, x, y, lowest);
    const z = support ? support.pos.z + half : 0;
    const depth = support ? camera.distance(support.pos) - 1e-6 : Number.POSITIVE_INFINITY;
    return { c: { x, y, z: z + 0.0005 }, hx, hy, depth };
  };
  const g = GRIPPER_GEOMETRY;
  const shadows = [shadowAt(scene.ee.x, scene.ee.y, scene.ee.z + g.finger.bottom, g.palm.hx, g.palm.hy)];
  const held = scene.blocks[scene.held];
  if (held) shadows.push(shadowAt(held.pos.x, held.pos.y, held.pos.z - half, half, half));
  const order: ({ kind: "box"; box: Box } | { kind: "shadow"; shadow: Shadow })[] = [
    ...boxes.map((box) => ({ kind: "box" as const, box })),
    ...shadows.map((shadow) => ({ kind: "shadow" as const, shadow })),
  ];
  const depthOf = (e: (typeof order)[number]) => (e.kind === "box" ? e.box.depth : e.shadow.depth);
  order.sort((a, b) => depthOf(b) - depthOf(a));
  for (const e of order) {
    if (e.kind === "box") drawBox(frame, camera, e.box, shades, lighting.tint);
    else drawShadow(frame, camera, e.shadow);
  }

  if (options.noise && options.noise.sigma > 0) addNoise(frame, options.noise.sigma, options.noise.seed);
  return frame;
}

const NOISE_TABLE_BITS = 18;
let normalTable: Float32Array | null = null;
function normals(): Float32Array {
  if (!normalTable) {
    const rng = createRng(0x5eed);
    normalTable = new Float32Array(1 << NOISE_TABLE_BITS);
    for (let i = 0; i < normalTable.length; i++) normalTable[i] = rng.normal();
  }
  return normalTable;
}

/**
 * Adds seeded Gaussian noise: each row reads a run of a fixed table of normal samples from an
 * offset drawn from the seed (a PRNG call per pixel would cost more than the whole render).
 */
export function addNoise(frame: Frame, sigma: number, seed: number): void {
  const table = normals();
  const mask = table.length - 1;
  const data = frame.data;
  const rng = createRng(deriveSeed(seed, 7));
  const rowLength = frame.width * 3;
  for (let row = 0; row < frame.height; row++) {
    let k = Math.floor(rng.next() * table.length);
    const end = (row + 1) * rowLength;
    for (let i = row * rowLength; i < end; i++, k = (k + 1) & mask) {
      const v = (data[i] as number) + sigma * (table[k] as number);
      data[i] = v < 0 ? 0 : v > 255 ? 255 : v + 0.5;
    }
  }
}

/** A lighting variation drawn from a seed (brightness 0.75..1.2, a moving light, a slight tint). */
export function randomLighting(seed: number): Lighting {
  const rng = createRng(deriveSeed(seed, 3));
  return {
    brightness: rng.uniform(0.75, 1.2),
    ambient: rng.uniform(0.35, 0.6),
    direction: [rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.4), 1],
    tint: [rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)],
  };
}

/** JPEG bytes of a frame, for sending to the server. */
export async function encodeJpeg(frame: Frame, quality = 90): Promise<Buffer> {
  return sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } })
    .jpeg({ quality })
    .toBuffer();
}

/** PNG bytes of a frame (lossless; for debugging and image strips). */
export async function encodePng(frame: Frame): Promise<Buffer> {
  return sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } })
    .png()
    .toBuffer();
}

/** Frames side by side in one PNG (a strip of an episode). */
export async function encodePngStrip(frames: readonly Frame[]): Promise<Buffer> {
  const first = frames[0];
  if (!first) throw new Error("no frames");
  const { width, height } = first;
  const out = new Uint8Array(width * frames.length * height * 3);
  frames.forEach((f, k) => {
    for (let row = 0; row < height; row++) {
      out.set(f.data.subarray(row * width * 3, (row + 1) * width * 3), (row * width * frames.length + k * width) * 3);
    }
  });
  return sharp(out, { raw: { width: width * frames.length, height, channels: 3 } })
    .png()
    .toBuffer();
}
