import type { Rng } from "./rng.ts";
import { BLOCK_SIZE, COLOURS, type Colour, findBlock, footprintsOverlap, type Scene } from "./scene.ts";

/**
 * Tasks, the instructions that name them (with paraphrases), a parser from instruction to task,
 * success criteria and step limits.
 */

export const TASK_KINDS = ["pick", "move_to", "put_on"] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

export type Task =
  | { kind: "pick"; colour: Colour }
  | { kind: "move_to"; colour: Colour }
  | { kind: "put_on"; colour: Colour; target: Colour };

/** A picked block is held with its bottom at least this high above the table. */
export const LIFT_HEIGHT = 0.05;
/** move_to: the TCP within this horizontal distance of the block's centre... */
export const MOVE_TO_RADIUS = 0.03;
/** ...and between 0 and this height above the block's top. */
export const MOVE_TO_MAX_HEIGHT = 0.08;

/** Steps an episode of each kind may take (the expert needs well under half). */
export const STEP_LIMITS: Record<TaskKind, number> = { pick: 50, move_to: 40, put_on: 80 };

/** Instruction templates: the first of each list is the canonical form; `{c}` the block, `{t}` the target. */
export const TEMPLATES: Record<TaskKind, readonly string[]> = {
  pick: [
    "pick up the {c} block",
    "grab the {c} cube",
    "lift the {c} block",
    "pick the {c} cube up",
    "grasp the {c} block and lift it",
  ],
  move_to: [
    "move to the {c} block",
    "go to the {c} cube",
    "reach the {c} block",
    "move the gripper above the {c} block",
    "hover over the {c} cube",
  ],
  put_on: [
    "put the {c} block on the {t} block",
    "place the {c} cube on top of the {t} cube",
    "stack the {c} block on the {t} block",
    "put the {c} cube onto the {t} block",
  ],
};

export function instructionFor(task: Task, template = 0): string {
  const templates = TEMPLATES[task.kind];
  const text = templates[template % templates.length] as string;
  return text.replace("{c}", task.colour).replace("{t}", task.kind === "put_on" ? task.target : "");
}

export type ParseResult = { ok: true; task: Task } | { ok: false; reason: string };

const COLOUR = `(${COLOURS.join("|")})`;
const OBJ = "(?:block|cube|box)";
const PATTERNS: { kind: TaskKind; re: RegExp }[] = [
  {
    kind: "put_on",
    re: new RegExp(
      `^(?:put|place|stack|set|move) (?:the )?${COLOUR} ${OBJ} (?:on top of|onto|on) (?:the )?${COLOUR} ${OBJ}$`,
    ),
  },
  {
    kind: "move_to",
    re: new RegExp(
      `^(?:(?:move|go|reach|hover)(?: the gripper| the arm)? (?:to|towards|toward|above|over)|reach|hover over|hover above) (?:the )?${COLOUR} ${OBJ}$`,
    ),
  },
  {
    kind: "pick",
    re: new RegExp(
      `^(?:pick up|pick|grab|lift|grasp|take|pick and lift) (?:up )?(?:the )?${COLOUR} ${OBJ}(?: up)?(?: and lift it| and lift it up)?$`,
    ),
  },
];

/** Lower-case, drop punctuation and a polite prefix, collapse spaces. */
export function normalizeInstruction(instruction: string): string {
  return instruction
    .toLowerCase()
    .replace(/[^a-z ]+/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .replace(/^(?:please |robot |now )+/, "")
    .replace(/ please$/, "");
}

export function parseInstruction(instruction: string): ParseResult {
  const text = normalizeInstruction(instruction);
  for (const { kind, re } of PATTERNS) {
    const m = re.exec(text);
    if (!m) continue;
    const colour = m[1] as Colour;
    if (kind === "put_on") {
      const target = m[2] as Colour;
      if (target === colour) return { ok: false, reason: "a block cannot be put on itself" };
      return { ok: true, task: { kind, colour, target } };
    }
    return { ok: true, task: { kind, colour } };
  }
  return { ok: false, reason: `not a known task: "${instruction}"` };
}

/** Colours a task needs in the scene. */
export function taskColours(task: Task): Colour[] {
  return task.kind === "put_on" ? [task.colour, task.target] : [task.colour];
}

/** A task of `kind` over the blocks of `scene` (which must hold enough blocks). */
export function sampleTask(kind: TaskKind, scene: Scene, rng: Rng): Task {
  const colours = rng.shuffle(scene.blocks.map((b) => b.colour));
  const [colour, target] = colours as [Colour, Colour];
  if (kind === "put_on") return { kind, colour, target };
  return { kind, colour };
}

export function isSuccess(task: Task, scene: Scene): boolean {
  const block = findBlock(scene, task.colour);
  if (!block) return false;
  const held = scene.held >= 0 && scene.blocks[scene.held] === block;
  switch (task.kind) {
    case "pick":
      return held && block.pos.z - BLOCK_SIZE / 2 >= LIFT_HEIGHT;
    case "move_to": {
      const horizontal = Math.hypot(scene.ee.x - block.pos.x, scene.ee.y - block.pos.y);
      const above = scene.ee.z - (block.pos.z + BLOCK_SIZE / 2);
      return !held && horizontal <= MOVE_TO_RADIUS && above >= 0 && above <= MOVE_TO_MAX_HEIGHT;
    }
    case "put_on": {
      const target = findBlock(scene, task.target);
      if (!target || held) return false;
      const resting = Math.abs(block.pos.z - target.pos.z - BLOCK_SIZE) < 1e-6;
      const centred =
        Math.abs(block.pos.x - target.pos.x) <= BLOCK_SIZE / 2 &&
        Math.abs(block.pos.y - target.pos.y) <= BLOCK_SIZE / 2;
      return resting && centred && footprintsOverlap(block.pos, target.pos);
    }
  }
}
