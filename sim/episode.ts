import { expertAction } from "./expert.ts";
import { type Frame, type Lighting, randomLighting, render } from "./render.ts";
import { createRng, deriveSeed } from "./rng.ts";
import { type Action, COLOURS, createScene, heldColour, proprio, type Scene, step } from "./scene.ts";
import {
  instructionFor,
  isSuccess,
  parseInstruction,
  STEP_LIMITS,
  sampleTask,
  type Task,
  type TaskKind,
  TEMPLATES,
  taskColours,
} from "./tasks.ts";

/**
 * One episode: a seeded scene and task, a policy asked for an action at every step (sync or
 * async), the action applied, until success or the task's step limit.
 */

export type RobotState = {
  /** TCP position (metres, scene frame). */
  eePosition: [number, number, number];
  /** 1 open, 0 closed. */
  gripper: number;
  /** Colour of the block held, or null. */
  holding: string | null;
  /** `[x, y, z, roll, pitch, yaw, gripper]`. */
  proprio: number[];
};

export type Observation = {
  /** Null when the episode runs without rendering (the expert does not look). */
  frame: Frame | null;
  instruction: string;
  state: RobotState;
  step: number;
  /** The scene itself, for privileged policies (the expert); a learned policy must not use it. */
  scene: Readonly<Scene>;
};

export type Policy = (observation: Observation) => Action | Promise<Action>;

export type EpisodeSetup = {
  seed: number;
  scene: Scene;
  task: Task;
  instruction: string;
};

/**
 * The scene and task of a seed. `kind` picks the task type; `instruction` (parsed) fixes the task
 * instead, and the scene is built to contain the blocks it names. `paraphrase` true draws one of
 * the templates from the seed, else the canonical instruction is used.
 */
export function setupEpisode(
  seed: number,
  options: { kind?: TaskKind; instruction?: string; paraphrase?: boolean } = {},
): EpisodeSetup {
  const rng = createRng(deriveSeed(seed, 1));
  if (options.instruction !== undefined) {
    const parsed = parseInstruction(options.instruction);
    if (!parsed.ok) throw new Error(parsed.reason);
    const scene = createScene(seed, { include: taskColours(parsed.task) });
    return { seed, scene, task: parsed.task, instruction: options.instruction };
  }
  const kind = options.kind ?? rng.pick(["pick", "move_to", "put_on"] as const);
  const scene = createScene(seed);
  const task = sampleTask(kind, scene, rng);
  const template = options.paraphrase ? rng.int(0, TEMPLATES[kind].length - 1) : 0;
  return { seed, scene, task, instruction: instructionFor(task, template) };
}

/**
 * The same scene with the instruction naming another block present (the first colour in COLOURS
 * order that is not the task's): success is then handling that block. For checking that a policy
 * reads the instruction.
 */
export function namingAnotherBlock(setup: EpisodeSetup): EpisodeSetup {
  const original = setup.task.colour;
  const present = setup.scene.blocks.map((b) => b.colour);
  const other = COLOURS.find((c) => c !== original && present.includes(c));
  if (other === undefined) throw new Error(`seed ${setup.seed}: no other block in the scene`);
  return {
    ...setup,
    task: { ...setup.task, colour: other },
    instruction: setup.instruction.replace(original, other),
  };
}

export function robotState(scene: Scene): RobotState {
  return {
    eePosition: [scene.ee.x, scene.ee.y, scene.ee.z],
    gripper: scene.gripper,
    holding: heldColour(scene),
    proprio: proprio(scene),
  };
}

export type EpisodeOptions = {
  /** Render frames (default true). */
  render?: boolean;
  /** Keep every frame in the result (default true when rendering). */
  keepFrames?: boolean;
  /** Sensor noise sigma (0..255 units); seeded per step from the episode seed. */
  noise?: number;
  /** Vary the lighting per episode (from the seed). */
  lighting?: boolean | Lighting;
  /** Overrides the task's step limit. */
  maxSteps?: number;
  /** Called after every step (for progress reports). */
  onStep?: (info: { step: number; action: Action; scene: Scene }) => void;
  /** Perturbs the applied action (DART-style data collection); the recorded action is the policy's. */
  perturb?: (action: Action, step: number) => Action;
};

export type EpisodeResult = {
  seed: number;
  task: Task;
  instruction: string;
  success: boolean;
  steps: number;
  /** The frame seen before each action, and the final frame (steps + 1 when kept). */
  frames: Frame[];
  actions: number[][];
  /** Robot state before each action. */
  states: RobotState[];
  final: Scene;
};

export async function runEpisode(
  setup: EpisodeSetup,
  policy: Policy,
  options: EpisodeOptions = {},
): Promise<EpisodeResult> {
  const scene = setup.scene;
  const limit = options.maxSteps ?? STEP_LIMITS[setup.task.kind];
  const rendering = options.render ?? true;
  const keep = rendering && (options.keepFrames ?? true);
  const lighting =
    options.lighting === true ? randomLighting(setup.seed) : options.lighting ? options.lighting : undefined;
  const draw = (k: number): Frame | null => {
    if (!rendering) return null;
    return render(scene, {
      ...(lighting ? { lighting } : {}),
      ...(options.noise ? { noise: { sigma: options.noise, seed: deriveSeed(setup.seed, 100 + k) } } : {}),
    });
  };
  const frames: Frame[] = [];
  const actions: number[][] = [];
  const states: RobotState[] = [];
  let success = isSuccess(setup.task, scene);
  let steps = 0;
  while (!success && steps < limit) {
    const frame = draw(steps);
    if (frame && keep) frames.push(frame);
    const state = robotState(scene);
    states.push(state);
    const action = [...(await policy({ frame, instruction: setup.instruction, state, step: steps, scene }))];
    actions.push(action);
    step(scene, options.perturb ? options.perturb(action, steps) : action);
    steps++;
    options.onStep?.({ step: steps, action, scene });
    success = isSuccess(setup.task, scene);
  }
  if (keep) {
    const last = draw(steps);
    if (last) frames.push(last);
  }
  return {
    seed: setup.seed,
    task: setup.task,
    instruction: setup.instruction,
    success,
    steps,
    frames,
    actions,
    states,
    final: scene,
  };
}

/** The scripted expert as a policy (it reads the scene and the parsed instruction). */
export const expertPolicy: Policy = (observation) => {
  const parsed = parseInstruction(observation.instruction);
  if (!parsed.ok) throw new Error(parsed.reason);
  return expertAction(observation.scene as Scene, parsed.task);
};
