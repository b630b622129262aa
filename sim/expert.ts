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
 * pick: approach down a funnel over the block (FUNNEL), close, lift. move_to: go above the block.
 * put_on: pick, lift to a carrying height, carry above the target, descend, open.
 */

/** The expert's largest translation per step and axis (below the scene's MAX_STEP). */
export const EXPERT_STEP = 0.02;
/** Height of the TCP above a block's centre while approaching it from afar. */
export const HOVER = 0.06;
/** TCP height a picked block is lifted to. */
export const LIFT_TO = 0.12;
/**
 * The approach is a funnel: the TCP's target height above the block grows linearly with the
 * horizontal distance, from the block's centre within GRASP_ALIGN (a flat bottom, so a small
 * horizontal error does not hold the gripper up) to HOVER at FUNNEL and beyond.
 * Every action is a continuous function of the state (no "aligned, now descend" switch that a
 * policy would have to resolve to a fraction of a pixel), and a perturbed execution (DART data
 * collection) converges the same way.
 */
export const FUNNEL = 0.04;
/** It closes within this horizontal distance and this height of the block's centre (metres), well inside the grasp tolerances (GRASP_RADIUS, GRASP_HEIGHT_TOLERANCE). */
export const GRASP_ALIGN = 0.012;
export const GRASP_HEIGHT = 0.01;
/** Placing (put_on): horizontal alignment before descending, and the vertical "arrived" tolerance. */
const ALIGN = 0.006;
const ARRIVE = 0.005;
/** Once below the carrying height, the expert keeps descending (correcting x/y) within this radius. */
const NEAR = 0.015;
const HALF = BLOCK_SIZE / 2;

const clampStep = (v: number): number => Math.max(-EXPERT_STEP, Math.min(EXPERT_STEP, v));

function moveTowards(ee: Vec3, target: Vec3, gripper: number): number[] {
  return [clampStep(target.x - ee.x), clampStep(target.y - ee.y), clampStep(target.z - ee.z), 0, 0, 0, gripper];
}

function horizontalDistance(a: Vec3, b: Vec3): number {
  return Math.hypot(a.x - b.x, a.y - b.y);
}

/** Approach `block` down the funnel and close (a closed or wrongly loaded gripper opens first). */
function pickAction(scene: Scene, block: Block): number[] {
  const ee = scene.ee;
  if (scene.held >= 0 || !isOpen(scene.gripper)) {
    // Holding the wrong block, or closed on nothing: open and back off upwards.
    return [0, 0, EXPERT_STEP, 0, 0, 0, GRIPPER_OPEN];
  }
  const horizontal = horizontalDistance(ee, block.pos);
  if (horizontal <= GRASP_ALIGN && Math.abs(ee.z - block.pos.z) <= GRASP_HEIGHT) {
    return [0, 0, 0, 0, 0, 0, GRIPPER_CLOSED];
  }
  const z = block.pos.z + HOVER * Math.min(1, Math.max(0, horizontal - GRASP_ALIGN) / (FUNNEL - GRASP_ALIGN));
  return moveTowards(ee, { x: block.pos.x, y: block.pos.y, z }, GRIPPER_OPEN);
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
