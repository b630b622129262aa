import { describe, expect, it } from "vitest";
import { BLOCK_SIZE, COLOURS, createScene, type Scene, step } from "../../sim/scene.ts";
import {
  instructionFor,
  isSuccess,
  LIFT_HEIGHT,
  MOVE_TO_RADIUS,
  parseInstruction,
  TASK_KINDS,
  type Task,
  TEMPLATES,
} from "../../sim/tasks.ts";

const HALF = BLOCK_SIZE / 2;

describe("parseInstruction", () => {
  it("parses every template of every task back to its task", () => {
    for (const kind of TASK_KINDS) {
      for (const colour of COLOURS) {
        const target = COLOURS.find((c) => c !== colour) ?? "red";
        const task: Task = kind === "put_on" ? { kind, colour, target } : { kind, colour };
        TEMPLATES[kind].forEach((_, i) => {
          expect(parseInstruction(instructionFor(task, i))).toEqual({ ok: true, task });
        });
      }
    }
  });

  it.each([
    ["pick up the red block", { kind: "pick", colour: "red" }],
    ["Please grab the red cube.", { kind: "pick", colour: "red" }],
    ["LIFT THE GREEN BLOCK!", { kind: "pick", colour: "green" }],
    ["pick the blue cube up", { kind: "pick", colour: "blue" }],
    ["grasp the yellow block", { kind: "pick", colour: "yellow" }],
    ["move to the blue block", { kind: "move_to", colour: "blue" }],
    ["go to the red cube", { kind: "move_to", colour: "red" }],
    ["hover over the green block", { kind: "move_to", colour: "green" }],
    ["put the green block on the yellow block", { kind: "put_on", colour: "green", target: "yellow" }],
    ["Stack the red cube onto the blue cube", { kind: "put_on", colour: "red", target: "blue" }],
    ["place the blue block on top of the green block", { kind: "put_on", colour: "blue", target: "green" }],
  ])("%s", (instruction, task) => {
    expect(parseInstruction(instruction)).toEqual({ ok: true, task });
  });

  it.each([
    "dance",
    "",
    "pick up the purple block",
    "pick up the red ball",
    "move the red block",
    "put the red block next to the blue block",
  ])("refuses %j", (instruction) => {
    const result = parseInstruction(instruction);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/not a known task/);
  });

  it("refuses putting a block on itself", () => {
    expect(parseInstruction("put the red block on the red block")).toEqual({
      ok: false,
      reason: "a block cannot be put on itself",
    });
  });
});

/** A scene with red at (0, 0) and blue at (0.1, 0). */
function twoBlocks(): Scene {
  const scene = createScene(1, { blocks: 2, include: ["red", "blue"] });
  const red = scene.blocks.find((b) => b.colour === "red");
  const blue = scene.blocks.find((b) => b.colour === "blue");
  if (!red || !blue) throw new Error("red and blue");
  red.pos = { x: 0, y: 0, z: HALF };
  blue.pos = { x: 0.1, y: 0, z: HALF };
  return scene;
}

const hold = (scene: Scene, colour: string) => {
  const b = scene.blocks.find((x) => x.colour === colour);
  if (!b) throw new Error(colour);
  scene.ee = { ...b.pos };
  step(scene, [0, 0, 0, 0, 0, 0, 0]);
  expect(scene.blocks[scene.held]).toBe(b);
};

describe("isSuccess", () => {
  it("pick: the block held and its bottom lifted to LIFT_HEIGHT", () => {
    const scene = twoBlocks();
    const task: Task = { kind: "pick", colour: "red" };
    expect(isSuccess(task, scene)).toBe(false);
    hold(scene, "red");
    expect(isSuccess(task, scene)).toBe(false);
    step(scene, [0, 0, 0.03, 0, 0, 0, 0]);
    step(scene, [0, 0, LIFT_HEIGHT - 0.031, 0, 0, 0, 0]);
    expect(isSuccess(task, scene)).toBe(false);
    step(scene, [0, 0, 0.002, 0, 0, 0, 0]);
    expect(isSuccess(task, scene)).toBe(true);
    expect(isSuccess({ kind: "pick", colour: "blue" }, scene)).toBe(false);
    step(scene, [0, 0, 0, 0, 0, 0, 1]); // dropped: no longer picked
    expect(isSuccess(task, scene)).toBe(false);
  });

  it("move_to: the TCP within the radius, above the block's top and not too high", () => {
    const scene = twoBlocks();
    const task: Task = { kind: "move_to", colour: "blue" };
    scene.ee = { x: 0.1, y: 0, z: BLOCK_SIZE + 0.03 };
    expect(isSuccess(task, scene)).toBe(true);
    scene.ee = { x: 0.1 + MOVE_TO_RADIUS * 1.1, y: 0, z: BLOCK_SIZE + 0.03 };
    expect(isSuccess(task, scene)).toBe(false);
    scene.ee = { x: 0.1, y: 0, z: BLOCK_SIZE + 0.15 };
    expect(isSuccess(task, scene)).toBe(false);
    expect(isSuccess({ kind: "move_to", colour: "green" }, scene)).toBe(false);
  });

  it("put_on: the block released resting on the target", () => {
    const scene = twoBlocks();
    const task: Task = { kind: "put_on", colour: "red", target: "blue" };
    hold(scene, "red");
    scene.ee = { x: 0.105, y: 0.003, z: 0.1 };
    step(scene, [0, 0, 0, 0, 0, 0, 0]);
    expect(isSuccess(task, scene)).toBe(false); // still held
    step(scene, [0, 0, 0, 0, 0, 0, 1]);
    expect(isSuccess(task, scene)).toBe(true);
    expect(isSuccess({ kind: "put_on", colour: "blue", target: "red" }, scene)).toBe(false);

    const beside = twoBlocks();
    hold(beside, "red");
    beside.ee = { x: 0.16, y: 0, z: 0.1 };
    step(beside, [0, 0, 0, 0, 0, 0, 0]);
    step(beside, [0, 0, 0, 0, 0, 0, 1]);
    expect(isSuccess(task, beside)).toBe(false);
  });
});
