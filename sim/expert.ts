import {
  type Action,
  BLOCK_SIZE,
  type Block,
  findBlock,
  GRIPPER_CLOSED,
  GRIPPER_OPEN,
  isOpen,
  type Scene,
  type Vec3,
} from "./scene.ts";
import type { Task } from "./tasks.ts";

/**
 * A scripted expert: a pure function of the scene's state and the task (so it is closed-loop and
 * recovers from perturbations), emitting `delta_ee` actions `[dx, dy, dz, 0, 0, 0, gripper]`.
 * pick: approach above the block, descend, close, lift. move_to: go above the block.
 * put_on: pick, lift to a carrying height, carry above the target, descend, open.
 */

/** The expert's largest translation per step and axis (below the scene's MAX_STEP). */
export const EXPERT_STEP = 0.02;
/** Height of the TCP above a block's centre while approaching it. */
export const HOVER = 0.06;
/** TCP height a picked block is lifted to. */
export const LIFT_TO = 0.12;
/**
 * Horizontal alignment the expert needs before descending, and vertical tolerance for "arrived"
 * (metres): loose enough that a perturbed execution (DART data collection) still converges, well
 * inside the grasp tolerances (GRASP_RADIUS, GRASP_HEIGHT_TOLERANCE).
 */
const ALIGN = 0.006;
const ARRIVE = 0.005;
/** Once below the approach height, the expert keeps descending (correcting x/y) within this radius. */
const NEAR = 0.015;
/** It closes (or opens, to place) within this horizontal distance. */
const GRASP_ALIGN = 0.01;
const HALF = BLOCK_SIZE / 2;

const clampStep = (v: number): number => Math.max(-EXPERT_STEP, Math.min(EXPERT_STEP, v));

function moveTowards(ee: Vec3, target: Vec3, gripper: number): number[] {
  return [clampStep(target.x - ee.x), clampStep(target.y - ee.y), clampStep(target.z - ee.z), 0, 0, 0, gripper];
}

function horizontalDistance(a: Vec3, b: Vec3): number {
  return Math.hypot(a.x - b.x, a.y - b.y);
}

/** Approach `block` from above, descend and close (a closed or wrongly loaded gripper opens first). */
function pickAction(scene: Scene, block: Block): number[] {
  const ee = scene.ee;
  if (scene.held >= 0 || !isOpen(scene.gripper)) {
    // Holding the wrong block, or closed on nothing: open and back off upwards.
    return [0, 0, EXPERT_STEP, 0, 0, 0, GRIPPER_OPEN];
  }
  const above = { x: block.pos.x, y: block.pos.y, z: block.pos.z + HOVER };
  const horizontal = horizontalDistance(ee, block.pos);
  const descending = horizontal <= ALIGN || (horizontal <= NEAR && ee.z < above.z - ARRIVE);
  if (!descending) {
    // Do not sweep through blocks on the way: stay at least at hover height while far away.
    const target = { ...above, z: Math.max(above.z, Math.min(ee.z, above.z + 0.04)) };
    return moveTowards(ee, target, GRIPPER_OPEN);
  }
  if (Math.abs(ee.z - block.pos.z) > ARRIVE || horizontal > GRASP_ALIGN) {
    return moveTowards(ee, { x: block.pos.x, y: block.pos.y, z: block.pos.z }, GRIPPER_OPEN);
  }
  return [0, 0, 0, 0, 0, 0, GRIPPER_CLOSED];
}

export function expertAction(scene: Scene, task: Task): Action {
  const block = findBlock(scene, task.colour);
  if (!block) return [0, 0, 0, 0, 0, 0, scene.gripper];
  const ee = scene.ee;
  const holding = scene.held >= 0 && scene.blocks[scene.held] === block;
  switch (task.kind) {
    case "move_to": {
      const gripper = GRIPPER_OPEN;
      if (scene.held >= 0) return [0, 0, EXPERT_STEP, 0, 0, 0, gripper];
      return moveTowards(ee, { x: block.pos.x, y: block.pos.y, z: block.pos.z + HALF + 0.04 }, gripper);
    }
    case "pick": {
      if (!holding) return pickAction(scene, block);
      return moveTowards(ee, { x: ee.x, y: ee.y, z: LIFT_TO }, GRIPPER_CLOSED);
    }
    case "put_on": {
      const target = findBlock(scene, task.target);
      if (!target) return [0, 0, 0, 0, 0, 0, scene.gripper];
      if (!holding) {
        // Already placed (success ends the episode) or not yet picked.
        return pickAction(scene, block);
      }
      const off = scene.heldOffset;
      const restZ = target.pos.z + BLOCK_SIZE - off.z; // TCP height with the block resting on the target
      const carryZ = restZ + 0.03;
      const goal = { x: target.pos.x - off.x, y: target.pos.y - off.y };
      const horizontal = Math.hypot(ee.x - goal.x, ee.y - goal.y);
      const descending = horizontal <= ALIGN || (horizontal <= NEAR && ee.z < carryZ - ARRIVE);
      if (!descending) {
        // Lift first to clear the target, then carry across.
        if (ee.z < carryZ - ARRIVE) return [0, 0, clampStep(carryZ - ee.z), 0, 0, 0, GRIPPER_CLOSED];
        return moveTowards(ee, { ...goal, z: carryZ }, GRIPPER_CLOSED);
      }
      if (ee.z - restZ > ARRIVE || horizontal > GRASP_ALIGN)
        return moveTowards(ee, { ...goal, z: restZ }, GRIPPER_CLOSED);
      return [0, 0, 0, 0, 0, 0, GRIPPER_OPEN];
    }
  }
}
