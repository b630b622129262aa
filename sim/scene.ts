import { createRng, deriveSeed } from "./rng.ts";

/**
 * The tabletop scene and its kinematic physics. Units are metres; the frame is the robot base
 * frame of docs/sim.md: x to the right (as the camera sees it), y forward (away from the camera),
 * z up; the table surface is z = 0 and its centre the origin.
 *
 * The end effector is a point, the tool centre point (TCP) between the fingertips; the gripper
 * keeps a fixed vertical orientation (rotation deltas are accepted and ignored). The gripper
 * follows the RLDS/OpenVLA convention: the action's last value is absolute, 1 = open, 0 = closed,
 * and values >= 0.5 mean open.
 */

export const COLOURS = ["red", "green", "blue", "yellow"] as const;
export type Colour = (typeof COLOURS)[number];

/** Edge length of every block (a cube). */
export const BLOCK_SIZE = 0.05;
const HALF = BLOCK_SIZE / 2;

/** The table top as drawn; blocks are placed well inside it. */
export const TABLE = { xMin: -0.3, xMax: 0.3, yMin: -0.22, yMax: 0.22 } as const;
/** Where block centres may be placed at the start of an episode. */
export const PLACEMENT = { xMin: -0.17, xMax: 0.17, yMin: -0.13, yMax: 0.13 } as const;
/** Minimum distance between two block centres at placement (no overlap, room for the fingers). */
export const MIN_BLOCK_DISTANCE = 0.1;

/** The reachable workspace of the TCP: a clamp applied after every action. */
export const WORKSPACE = { xMin: -0.22, xMax: 0.22, yMin: -0.18, yMax: 0.18, zMin: 0, zMax: 0.2 } as const;

/** Largest translation per step and axis (metres); larger deltas are clamped. */
export const MAX_STEP = 0.03;

/** A closing gripper grasps a block whose centre is within this horizontal distance of the TCP... */
export const GRASP_RADIUS = 0.02;
/** ...and within this vertical distance of the TCP. */
export const GRASP_HEIGHT_TOLERANCE = 0.015;

/** 1 = open, 0 = closed (absolute, RLDS convention). */
export const GRIPPER_OPEN = 1;
export const GRIPPER_CLOSED = 0;

export type Vec3 = { x: number; y: number; z: number };

export type Block = {
  colour: Colour;
  /** Centre of the cube. */
  pos: Vec3;
};

export type Scene = {
  seed: number;
  blocks: Block[];
  ee: Vec3;
  /** 1 open, 0 closed. */
  gripper: number;
  /** Index into blocks of the block held, or -1. */
  held: number;
  /** The held block's centre minus the TCP at the moment of grasping. */
  heldOffset: Vec3;
};

/** `[dx, dy, dz, droll, dpitch, dyaw, gripper]` (OpenVLA `delta_ee`). */
export type Action = readonly number[];

export type SceneOptions = {
  /** Number of blocks, 2..4; drawn from the seed when absent. */
  blocks?: number;
  /** Colours that must be present (for a task); the rest are drawn from the seed. */
  include?: readonly Colour[];
};

export function createScene(seed: number, options: SceneOptions = {}): Scene {
  const rng = createRng(deriveSeed(seed, 0));
  const include = [...new Set(options.include ?? [])];
  const count = Math.max(options.blocks ?? rng.int(2, 4), include.length, 2);
  if (count > COLOURS.length) throw new Error(`at most ${COLOURS.length} blocks`);
  const others = rng.shuffle(COLOURS.filter((c) => !include.includes(c)));
  const colours = rng.shuffle([...include, ...others.slice(0, count - include.length)]);
  const blocks: Block[] = [];
  for (const colour of colours) {
    // Rejection sampling; with at most 4 blocks 10 cm apart in a 34 x 26 cm area it ends fast.
    for (let attempt = 0; ; attempt++) {
      const x = rng.uniform(PLACEMENT.xMin, PLACEMENT.xMax);
      const y = rng.uniform(PLACEMENT.yMin, PLACEMENT.yMax);
      const free = blocks.every((b) => Math.hypot(b.pos.x - x, b.pos.y - y) >= MIN_BLOCK_DISTANCE);
      if (free || attempt > 10_000) {
        blocks.push({ colour, pos: { x, y, z: HALF } });
        break;
      }
    }
  }
  const ee = { x: rng.uniform(-0.1, 0.1), y: rng.uniform(-0.12, -0.02), z: rng.uniform(0.12, 0.18) };
  return { seed, blocks, ee, gripper: GRIPPER_OPEN, held: -1, heldOffset: { x: 0, y: 0, z: 0 } };
}

export function cloneScene(scene: Scene): Scene {
  return {
    ...scene,
    blocks: scene.blocks.map((b) => ({ colour: b.colour, pos: { ...b.pos } })),
    ee: { ...scene.ee },
    heldOffset: { ...scene.heldOffset },
  };
}

export function findBlock(scene: Scene, colour: Colour): Block | undefined {
  return scene.blocks.find((b) => b.colour === colour);
}

export function heldColour(scene: Scene): Colour | null {
  return scene.held >= 0 ? (scene.blocks[scene.held]?.colour ?? null) : null;
}

export function isOpen(gripperValue: number): boolean {
  return gripperValue >= 0.5;
}

const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

/**
 * Applies one action in place: translate the TCP (clamped per step, to the workspace, and so that
 * a held block never goes below the table), then the gripper: closing next to a block grasps it,
 * opening drops what it holds onto the table or the block below it.
 */
export function step(scene: Scene, action: Action): void {
  if (action.length !== 7 || action.some((v) => !Number.isFinite(v))) {
    throw new Error("an action is 7 finite numbers [dx, dy, dz, droll, dpitch, dyaw, gripper]");
  }
  const [dx, dy, dz, , , , g] = action as [number, number, number, number, number, number, number];
  const ee = scene.ee;
  let zMin: number = WORKSPACE.zMin;
  if (scene.held >= 0) zMin = Math.max(zMin, HALF - scene.heldOffset.z);
  ee.x = clamp(ee.x + clamp(dx, -MAX_STEP, MAX_STEP), WORKSPACE.xMin, WORKSPACE.xMax);
  ee.y = clamp(ee.y + clamp(dy, -MAX_STEP, MAX_STEP), WORKSPACE.yMin, WORKSPACE.yMax);
  ee.z = clamp(ee.z + clamp(dz, -MAX_STEP, MAX_STEP), zMin, WORKSPACE.zMax);
  const held = scene.blocks[scene.held];
  if (held) {
    held.pos.x = ee.x + scene.heldOffset.x;
    held.pos.y = ee.y + scene.heldOffset.y;
    held.pos.z = ee.z + scene.heldOffset.z;
  }

  const open = isOpen(g);
  const wasOpen = isOpen(scene.gripper);
  scene.gripper = open ? GRIPPER_OPEN : GRIPPER_CLOSED;
  if (wasOpen && !open) grasp(scene);
  if (!wasOpen && open && scene.held >= 0) {
    scene.held = -1;
    settle(scene);
  }
}

function grasp(scene: Scene): void {
  const ee = scene.ee;
  let best = -1;
  let bestDistance = Number.POSITIVE_INFINITY;
  scene.blocks.forEach((b, i) => {
    const horizontal = Math.hypot(b.pos.x - ee.x, b.pos.y - ee.y);
    const vertical = Math.abs(b.pos.z - ee.z);
    if (horizontal <= GRASP_RADIUS && vertical <= GRASP_HEIGHT_TOLERANCE && horizontal < bestDistance) {
      best = i;
      bestDistance = horizontal;
    }
  });
  if (best < 0) return;
  const b = scene.blocks[best] as Block;
  scene.held = best;
  scene.heldOffset = { x: b.pos.x - ee.x, y: b.pos.y - ee.y, z: b.pos.z - ee.z };
}

/** Whether two blocks' footprints overlap (they could rest on each other). */
export function footprintsOverlap(a: Vec3, b: Vec3): boolean {
  return Math.abs(a.x - b.x) < BLOCK_SIZE && Math.abs(a.y - b.y) < BLOCK_SIZE;
}

/**
 * Every block not held falls straight down onto the highest support under it: the table or the
 * top of a lower block whose footprint overlaps (no tipping, no sliding: a block resting half
 * over an edge stays there). A block released inside another one (the kinematic gripper passes
 * through blocks) lands on top of it. Lowest blocks settle first so a stack lands in order.
 */
export function settle(scene: Scene): void {
  const order = scene.blocks.map((_, i) => i).filter((i) => i !== scene.held);
  const z = (i: number) => (scene.blocks[i] as Block).pos.z;
  order.sort((a, b) => z(a) - z(b) || a - b);
  order.forEach((i, rank) => {
    const b = scene.blocks[i] as Block;
    let support = 0;
    for (const j of order.slice(0, rank)) {
      const o = scene.blocks[j] as Block;
      if (footprintsOverlap(o.pos, b.pos)) support = Math.max(support, o.pos.z + HALF);
    }
    b.pos.z = support + HALF;
  });
}

/** The block with the highest top at or below `below` whose top contains (x, y), or null (the table). */
export function supportUnder(scene: Scene, x: number, y: number, below = Number.POSITIVE_INFINITY): Block | null {
  let best: Block | null = null;
  for (const b of scene.blocks) {
    const top = b.pos.z + HALF;
    if (Math.abs(b.pos.x - x) > HALF || Math.abs(b.pos.y - y) > HALF || top > below) continue;
    if (!best || top > best.pos.z + HALF) best = b;
  }
  return best;
}

/** Proprioception in the OpenVLA 7-D layout: `[x, y, z, roll, pitch, yaw, gripper]`. */
export function proprio(scene: Scene): number[] {
  return [scene.ee.x, scene.ee.y, scene.ee.z, 0, 0, 0, scene.gripper];
}
