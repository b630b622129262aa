import { describe, expect, it } from "vitest";
import { createRng } from "../../sim/rng.ts";
import {
  BLOCK_SIZE,
  COLOURS,
  createScene,
  GRASP_RADIUS,
  MAX_STEP,
  MIN_BLOCK_DISTANCE,
  PLACEMENT,
  type Scene,
  step,
  WORKSPACE,
} from "../../sim/scene.ts";

const HALF = BLOCK_SIZE / 2;
const OPEN = 1;
const CLOSED = 0;
const move = (dx: number, dy: number, dz: number, gripper: number) => [dx, dy, dz, 0, 0, 0, gripper];

/** Puts the TCP on a block's centre (as the expert would before closing). */
function onBlock(scene: Scene, index: number): void {
  const b = scene.blocks[index];
  if (!b) throw new Error("no block");
  scene.ee = { ...b.pos };
}

describe("rng", () => {
  it("is deterministic per seed and differs between seeds", () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });
});

describe("createScene", () => {
  it("is the same for the same seed, bit for bit, and differs for another seed", () => {
    expect(createScene(7)).toEqual(createScene(7));
    expect(createScene(7).blocks).not.toEqual(createScene(8).blocks);
  });

  it("places 2-4 blocks of distinct colours, apart, inside the placement area, on the table", () => {
    const counts = new Set<number>();
    for (let seed = 0; seed < 500; seed++) {
      const scene = createScene(seed);
      counts.add(scene.blocks.length);
      const colours = scene.blocks.map((b) => b.colour);
      expect(new Set(colours).size).toBe(colours.length);
      for (const c of colours) expect(COLOURS).toContain(c);
      scene.blocks.forEach((b, i) => {
        expect(b.pos.x).toBeGreaterThanOrEqual(PLACEMENT.xMin);
        expect(b.pos.x).toBeLessThanOrEqual(PLACEMENT.xMax);
        expect(b.pos.y).toBeGreaterThanOrEqual(PLACEMENT.yMin);
        expect(b.pos.y).toBeLessThanOrEqual(PLACEMENT.yMax);
        expect(b.pos.z).toBe(HALF);
        for (const o of scene.blocks.slice(i + 1)) {
          expect(Math.hypot(o.pos.x - b.pos.x, o.pos.y - b.pos.y)).toBeGreaterThanOrEqual(MIN_BLOCK_DISTANCE);
        }
      });
      expect(scene.gripper).toBe(OPEN);
      expect(scene.held).toBe(-1);
    }
    expect([...counts].sort()).toEqual([2, 3, 4]);
  });

  it("includes the colours a task needs", () => {
    for (let seed = 0; seed < 50; seed++) {
      const colours = createScene(seed, { include: ["yellow", "blue"] }).blocks.map((b) => b.colour);
      expect(colours).toContain("yellow");
      expect(colours).toContain("blue");
    }
  });
});

describe("step", () => {
  it("moves the end effector by the delta and ignores rotations", () => {
    const scene = createScene(1);
    const before = { ...scene.ee };
    step(scene, [0.01, -0.02, 0.005, 0.3, -0.2, 0.1, OPEN]);
    expect(scene.ee.x).toBeCloseTo(before.x + 0.01, 12);
    expect(scene.ee.y).toBeCloseTo(before.y - 0.02, 12);
    expect(scene.ee.z).toBeCloseTo(before.z + 0.005, 12);
  });

  it("clamps each delta to MAX_STEP and the position to the workspace and the table", () => {
    const scene = createScene(1);
    const before = { ...scene.ee };
    step(scene, move(1, -1, 0, OPEN));
    expect(scene.ee.x).toBeCloseTo(before.x + MAX_STEP, 12);
    expect(scene.ee.y).toBeCloseTo(before.y - MAX_STEP, 12);
    for (let i = 0; i < 40; i++) step(scene, move(1, 1, -1, OPEN));
    expect(scene.ee).toEqual({ x: WORKSPACE.xMax, y: WORKSPACE.yMax, z: 0 });
    for (let i = 0; i < 40; i++) step(scene, move(-1, -1, 1, OPEN));
    expect(scene.ee).toEqual({ x: WORKSPACE.xMin, y: WORKSPACE.yMin, z: WORKSPACE.zMax });
  });

  it("rejects an action that is not 7 finite numbers", () => {
    const scene = createScene(1);
    expect(() => step(scene, [0, 0, 0])).toThrow(/7 finite numbers/);
    expect(() => step(scene, [0, 0, Number.NaN, 0, 0, 0, 1])).toThrow(/7 finite numbers/);
  });

  it("grasps a block when closing at it; the block follows; opening drops it onto the table", () => {
    const scene = createScene(3);
    onBlock(scene, 0);
    step(scene, move(0, 0, 0, CLOSED));
    expect(scene.held).toBe(0);
    expect(scene.gripper).toBe(CLOSED);
    for (let i = 0; i < 4; i++) step(scene, move(0.01, 0.005, 0.02, CLOSED));
    const b = scene.blocks[0];
    expect(b?.pos.x).toBeCloseTo(scene.ee.x, 12);
    expect(b?.pos.y).toBeCloseTo(scene.ee.y, 12);
    expect(b?.pos.z).toBeCloseTo(scene.ee.z, 12);
    expect(b?.pos.z).toBeCloseTo(HALF + 0.08, 12);
    step(scene, move(0, 0, 0, OPEN));
    expect(scene.held).toBe(-1);
    expect(b?.pos.z).toBe(HALF);
    expect(b?.pos.x).toBeCloseTo(scene.ee.x, 12);
  });

  it("does not grasp when too far sideways, too high, or when the gripper was already closed", () => {
    const far = createScene(3);
    onBlock(far, 0);
    far.ee.x += GRASP_RADIUS * 1.2;
    step(far, move(0, 0, 0, CLOSED));
    expect(far.held).toBe(-1);

    const high = createScene(3);
    onBlock(high, 0);
    high.ee.z += 0.03;
    step(high, move(0, 0, 0, CLOSED));
    expect(high.held).toBe(-1);

    const closed = createScene(3);
    onBlock(closed, 0);
    closed.ee.z += 0.05;
    step(closed, move(0, 0, 0, CLOSED));
    step(closed, move(0, 0, -0.05, CLOSED));
    expect(closed.held).toBe(-1);
  });

  it("treats gripper values >= 0.5 as open and < 0.5 as closed", () => {
    const scene = createScene(3);
    onBlock(scene, 0);
    step(scene, move(0, 0, 0, 0.6));
    expect(scene.held).toBe(-1);
    step(scene, move(0, 0, 0, 0.4));
    expect(scene.held).toBe(0);
  });

  it("stacks: a block released above another lands on it; released off it, on the table", () => {
    const scene = createScene(5, { blocks: 2 });
    const [a, b] = scene.blocks;
    if (!a || !b) throw new Error("two blocks");
    onBlock(scene, 0);
    step(scene, move(0, 0, 0, CLOSED));
    scene.ee = { x: b.pos.x + 0.01, y: b.pos.y - 0.005, z: 0.12 };
    step(scene, move(0, 0, 0, CLOSED)); // the held block follows the teleported TCP
    step(scene, move(0, 0, 0, OPEN));
    expect(a.pos.z).toBeCloseTo(b.pos.z + BLOCK_SIZE, 12);
    expect(a.pos.x).toBeCloseTo(b.pos.x + 0.01, 12);

    // Pick the top block again and drop it beside the other: it falls to the table.
    scene.ee = { ...a.pos };
    step(scene, move(0, 0, 0, CLOSED));
    expect(scene.held).toBe(0);
    step(scene, move(0.03, 0.03, 0, CLOSED));
    step(scene, move(0.03, 0.03, 0, CLOSED));
    step(scene, move(0, 0, 0, OPEN));
    expect(a.pos.z).toBe(HALF);
    expect(b.pos.z).toBe(HALF);
  });

  it("never carries a held block below the table", () => {
    const scene = createScene(3);
    onBlock(scene, 0);
    scene.ee.z += 0.01; // grasp near the block's top: the block hangs 1 cm below the TCP
    step(scene, move(0, 0, 0, CLOSED));
    expect(scene.held).toBe(0);
    for (let i = 0; i < 10; i++) step(scene, move(0, 0, -0.03, CLOSED));
    expect(scene.blocks[0]?.pos.z).toBeCloseTo(HALF, 12);
    expect(scene.ee.z).toBeCloseTo(HALF + 0.01, 12);
  });
});
