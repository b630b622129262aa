import { Packr } from "msgpackr";
import { type AppError, errors, type FieldError } from "../../platform/errors.ts";
import { ROBOT_ID_PATTERN } from "../inference/inference.schemas.ts";
import { decodeBase64Image } from "../inference/inference-http.ts";
import type { RunInput } from "../inference/inference-runner.ts";
import { decodeJsonNumpy } from "../inference/json-numpy.ts";
import { unpackMsgpackNumpy } from "../inference/msgpack-numpy.ts";
import { isNdArray } from "../inference/ndarray.ts";
import type { RobotState } from "../safety/types.ts";
import { type ChunkAggregation, DEFAULT_SMOOTHING, type SmoothingOptions } from "./smoothing.ts";
import { invalidCharacter, nulProblems, type TextProblem } from "./text-guard.ts";

/**
 * The native stream protocol (docs/streaming.md): client and server messages, their parsing
 * and encoding. JSON text frames or msgpack binary frames; the encoding of the client's first
 * message is used for every server message of the connection.
 */

/** WebSocket close codes we use (RFC 6455 section 7.4.1). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  unsupportedData: 1003,
  policyViolation: 1008,
  tooBig: 1009,
  internalError: 1011,
  /** The customer account was suspended by the operator (HTTP 403 `customer_suspended`): docs/streaming.md. */
  customerSuspended: 4403,
  /** The customer's stream time (day or month allowance) is used up: docs/streaming.md. */
  streamTimeExhausted: 4429,
} as const;

export type Encoding = "json" | "msgpack";

/** A protocol violation: the connection is closed with `code` and `reason`. */
export class ProtocolViolation extends Error {
  readonly closeCode: number;
  constructor(closeCode: number, reason: string) {
    super(reason);
    this.closeCode = closeCode;
  }
}

export interface StartMessage {
  readonly type: "start";
  readonly model: string | undefined;
  /** Optional in the message when the API key is bound to a robot; always set once the session starts. */
  readonly robotId: string | undefined;
  readonly unnormKey: string | undefined;
  readonly instruction: string | undefined;
  readonly targetFps: number;
  readonly smoothing: SmoothingOptions;
  readonly chunkAggregation: ChunkAggregation;
}

export interface FrameMessage {
  readonly type: "frame";
  readonly seq: number;
  readonly image: RunInput["image"];
  readonly instruction: string | undefined;
  readonly robotState: RobotState | undefined;
  readonly timestamp: number | undefined;
  readonly mustGo: boolean;
}

export type ClientMessage =
  | { readonly type: "auth"; readonly apiKey: string }
  | StartMessage
  | FrameMessage
  | { readonly type: "stats" }
  | { readonly type: "stop" };

export const DEFAULT_TARGET_FPS = 10;
export const MAX_TARGET_FPS = 1000;
const ROBOT_ID = new RegExp(ROBOT_ID_PATTERN);

export interface ParseLimits {
  readonly imageMaxBytes: number;
  readonly imageMaxPixels: number;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Serializes a server message in the connection's encoding. */
export function encode(message: Record<string, unknown>, encoding: Encoding): string | Buffer {
  return encoding === "json" ? JSON.stringify(message) : packr.pack(message);
}

/** Decodes a raw WebSocket message into an object with a string `type`, or throws a ProtocolViolation. */
export function decodeEnvelope(data: Buffer, isBinary: boolean, limits: ParseLimits): Record<string, unknown> {
  let value: unknown;
  if (isBinary) {
    try {
      value = unpackMsgpackNumpy(data, { limits: { maxBytes: limits.imageMaxPixels * 3, maxDims: 3 } });
    } catch (e) {
      throw new ProtocolViolation(CLOSE.unsupportedData, `binary frame is not msgpack: ${(e as Error).message}`);
    }
  } else {
    try {
      value = JSON.parse(data.toString("utf8"));
    } catch {
      throw new ProtocolViolation(CLOSE.unsupportedData, "text frame is not JSON");
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value) || value instanceof Uint8Array) {
    throw new ProtocolViolation(CLOSE.unsupportedData, "a message must be an object");
  }
  const o = value as Record<string, unknown>;
  if (typeof o.type !== "string") throw new ProtocolViolation(CLOSE.unsupportedData, "a message needs a string type");
  return o;
}

/** Field problems reported per message; a message with thousands of unknown members gets a short answer. */
export const MAX_FIELD_PROBLEMS = 20;

/**
 * Collects field problems of one message, then throws them together as validation_failed.
 * U+0000 anywhere in the message (member names, nested values) wins: invalid_character.
 */
class Check {
  readonly problems: FieldError[] = [];
  private readonly o: Record<string, unknown>;
  private readonly nul: TextProblem[];
  constructor(o: Record<string, unknown>, allowed: readonly string[]) {
    this.o = o;
    this.nul = nulProblems(o);
    for (const k of Object.keys(o))
      if (k !== "type" && !allowed.includes(k)) this.fail(`/${k}`, "is not a known member");
  }
  fail(path: string, message: string): void {
    if (this.problems.length < MAX_FIELD_PROBLEMS) this.problems.push({ in: "body", path, message });
  }
  str(name: string, required: boolean, max = 1000): string | undefined {
    const v = this.o[name];
    if (v === undefined) {
      if (required) this.fail(`/${name}`, "is required");
      return undefined;
    }
    if (typeof v !== "string" || v.length === 0 || v.length > max) {
      this.fail(`/${name}`, `must be a string of 1..${max} characters`);
      return undefined;
    }
    return v;
  }
  done(type: string): AppError | undefined {
    if (this.nul.length > 0) return invalidCharacter(this.nul, `The ${type} message`);
    return this.problems.length === 0 ? undefined : errors.validation(this.problems, `The ${type} message is invalid.`);
  }
}

function finiteArray(v: unknown, min: number, max: number): boolean {
  return (
    Array.isArray(v) &&
    v.length >= min &&
    v.length <= max &&
    v.every((x) => typeof x === "number" && Number.isFinite(x) && Math.abs(x) <= 1e9)
  );
}

function parseRobotState(v: unknown, c: Check): RobotState | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    c.fail("/robot_state", "must be an object");
    return undefined;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!["ee_position", "ee_orientation", "gripper"].includes(k)) c.fail(`/robot_state/${k}`, "is not a known member");
  }
  if (!finiteArray(o.ee_position, 3, 3)) c.fail("/robot_state/ee_position", "must be 3 finite numbers");
  if (o.ee_orientation !== undefined && !finiteArray(o.ee_orientation, 3, 4)) {
    c.fail("/robot_state/ee_orientation", "must be 3 or 4 finite numbers");
  }
  if (o.gripper !== undefined && !(typeof o.gripper === "number" && o.gripper >= 0 && o.gripper <= 1)) {
    c.fail("/robot_state/gripper", "must be a number in [0, 1]");
  }
  return o as RobotState;
}

function parseSmoothing(v: unknown, c: Check): SmoothingOptions {
  if (v === undefined) return DEFAULT_SMOOTHING;
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    c.fail("/smoothing", "must be an object");
    return DEFAULT_SMOOTHING;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!["method", "alpha", "window", "gripper"].includes(k)) c.fail(`/smoothing/${k}`, "is not a known member");
  }
  const method = o.method ?? "none";
  if (method !== "none" && method !== "ema" && method !== "moving_average") {
    c.fail("/smoothing/method", "must be none, ema or moving_average");
  }
  const alpha = o.alpha ?? DEFAULT_SMOOTHING.alpha;
  if (typeof alpha !== "number" || !(alpha > 0 && alpha <= 1)) c.fail("/smoothing/alpha", "must be a number in (0, 1]");
  const window = o.window ?? DEFAULT_SMOOTHING.window;
  if (typeof window !== "number" || !Number.isInteger(window) || window < 1 || window > 100) {
    c.fail("/smoothing/window", "must be an integer in 1..100");
  }
  const gripper = o.gripper ?? false;
  if (typeof gripper !== "boolean") c.fail("/smoothing/gripper", "must be a boolean");
  return {
    method: method as SmoothingOptions["method"],
    alpha: alpha as number,
    window: window as number,
    gripper: gripper as boolean,
  };
}

export function parseStart(o: Record<string, unknown>): StartMessage {
  const c = new Check(o, [
    "model",
    "robot_id",
    "unnorm_key",
    "instruction",
    "target_fps",
    "smoothing",
    "chunk_aggregation",
  ]);
  const model = c.str("model", false, 128);
  const robotId = c.str("robot_id", false, 128);
  if (robotId !== undefined && !ROBOT_ID.test(robotId)) c.fail("/robot_id", "must be letters, digits and ._:/-");
  const unnormKey = c.str("unnorm_key", false, 128);
  const instruction = c.str("instruction", false, 1000);
  const fps = o.target_fps ?? DEFAULT_TARGET_FPS;
  if (typeof fps !== "number" || !(fps > 0 && fps <= MAX_TARGET_FPS)) {
    c.fail("/target_fps", `must be a number in (0, ${MAX_TARGET_FPS}]`);
  }
  const smoothing = parseSmoothing(o.smoothing, c);
  const agg = o.chunk_aggregation ?? "weighted";
  if (agg !== "latest" && agg !== "weighted" && agg !== "average") {
    c.fail("/chunk_aggregation", "must be latest, weighted or average");
  }
  const problem = c.done("start");
  if (problem !== undefined) throw problem;
  return {
    type: "start",
    model,
    robotId,
    unnormKey,
    instruction,
    targetFps: fps as number,
    smoothing,
    chunkAggregation: agg as ChunkAggregation,
  };
}

function parseImage(v: unknown, limits: ParseLimits): RunInput["image"] {
  if (typeof v === "string") return { imageBytes: decodeBase64Image(v, limits.imageMaxBytes) };
  if (v instanceof Uint8Array) {
    if (v.byteLength > limits.imageMaxBytes)
      throw errors.invalidImage(`The image is larger than ${limits.imageMaxBytes} bytes.`);
    return { imageBytes: v };
  }
  if (isNdArray(v)) return { imageArray: v };
  if (v !== null && typeof v === "object") {
    return { imageArray: decodeJsonNumpy(v, { maxBytes: limits.imageMaxPixels * 3, maxDims: 3 }) };
  }
  throw errors.invalidImage(
    "Send the image as JPEG/PNG/WebP bytes (msgpack bin), base64 (JSON), or a uint8 HxWx3 array (json_numpy / msgpack-numpy).",
  );
}

/**
 * Parses a frame; a field problem throws validation_failed (invalid_character for U+0000), a bad
 * image invalid_image / invalid_array.
 */
export function parseFrame(o: Record<string, unknown>, limits: ParseLimits): FrameMessage {
  const c = new Check(o, ["seq", "image", "instruction", "robot_state", "timestamp", "must_go"]);
  const seq = o.seq;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0)
    c.fail("/seq", "must be a non-negative integer");
  if (o.image === undefined) c.fail("/image", "is required");
  const instruction = c.str("instruction", false, 1000);
  const robotState = parseRobotState(o.robot_state, c);
  if (o.timestamp !== undefined && !(typeof o.timestamp === "number" && Number.isFinite(o.timestamp))) {
    c.fail("/timestamp", "must be a number");
  }
  if (o.must_go !== undefined && typeof o.must_go !== "boolean") c.fail("/must_go", "must be a boolean");
  const problem = c.done("frame");
  if (problem !== undefined) throw problem;
  return {
    type: "frame",
    seq: seq as number,
    image: parseImage(o.image, limits),
    instruction,
    robotState,
    timestamp: o.timestamp as number | undefined,
    mustGo: o.must_go === true,
  };
}

/** The seq of a message that failed to parse, when it has a usable one (for the error reply). */
export function seqOf(o: Record<string, unknown>): number | undefined {
  return typeof o.seq === "number" && Number.isSafeInteger(o.seq) ? o.seq : undefined;
}

export function parseAuth(o: Record<string, unknown>): { type: "auth"; apiKey: string } {
  const c = new Check(o, ["api_key"]);
  const apiKey = c.str("api_key", true, 256);
  const problem = c.done("auth");
  if (problem !== undefined) throw problem;
  return { type: "auth", apiKey: apiKey as string };
}

/** Messages without members besides `type`. */
export function parseBare(o: Record<string, unknown>, type: "stats" | "stop"): { type: "stats" | "stop" } {
  const problem = new Check(o, []).done(type);
  if (problem !== undefined) throw problem;
  return { type };
}

/**
 * A close reason is at most 123 bytes of UTF-8. Cut to 123 UTF-16 units first (each is at least
 * one byte), so a reason quoting a megabyte of client input costs nothing, and never end on half
 * a surrogate pair.
 */
export function closeReason(text: string): string {
  let s = text.length > 123 ? text.slice(0, 123) : text;
  while (Buffer.byteLength(s) > 123) s = s.slice(0, -1);
  const last = s.charCodeAt(s.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? s.slice(0, -1) : s;
}
