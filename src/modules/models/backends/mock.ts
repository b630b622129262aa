import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { CheckResult } from "../../../platform/health.ts";
import { decodeToken, MIN_ACTION_TOKEN } from "../action-codec.ts";
import type { BackendRequest, BackendResult, ModelBackend } from "./types.ts";

/**
 * What the mock answers: `tokens` imitates OpenVLA (action-token ids through the real codec;
 * chunked models get the decoded bins as a normalized chunk), `trajectory` imitates pi0 / openpi
 * (a smooth chunk of continuous normalized actions, see `MockBackend.trajectory`).
 */
export type MockOutput = "tokens" | "trajectory";

export const MOCK_OUTPUTS: readonly MockOutput[] = ["tokens", "trajectory"];

export interface MockBackendOptions {
  readonly actionDim: number;
  readonly chunk: number;
  /** Default `tokens`. */
  readonly output?: MockOutput;
  /** Simulated model time per batch call. */
  readonly latencyMs: number;
  /** Extra simulated time per item of the batch. */
  readonly perItemMs: number;
}

/** Largest |value| of the trajectory mock's arm dimensions (normalized units): inside [-1, 1]. */
export const TRAJECTORY_ARM_BOUND = 0.9;
/** Largest |value| of the trajectory mock's gripper (normalized): un-normalized it stays inside [q01, q99]. */
export const TRAJECTORY_GRIPPER_BOUND = 0.98;

/** 32-bit uniform numbers in [0, 1) from SHA-256 of the request key, block after block. */
function uniforms(key: string, count: number): number[] {
  const out: number[] = [];
  for (let block = 0; out.length < count; block++) {
    const digest = createHash("sha256").update(`${key}\0${block}`).digest();
    for (let i = 0; i + 4 <= digest.length && out.length < count; i += 4) out.push(digest.readUInt32LE(i) / 2 ** 32);
  }
  return out;
}

/**
 * Deterministic stand-in for a VLA: action-token ids derived from SHA-256 of
 * (model id, image hash, prompt), in 31744..31999, then through the real codec; or, with
 * `output: "trajectory"`, a smooth pi0-like chunk of continuous normalized actions from the same
 * key. Responses are labelled `backend: "mock"` by the engine. Not a policy: for API-flow and
 * load testing only.
 */
export class MockBackend implements ModelBackend {
  readonly kind = "mock" as const;
  private readonly options: MockBackendOptions;

  constructor(options: MockBackendOptions) {
    this.options = options;
  }

  /** The token ids the mock produces for one request (exported for tests). */
  static tokens(
    req: Pick<BackendRequest, "modelId" | "prompt"> & { imageSha256: string },
    count: number,
    actionDim = count,
  ): number[] {
    const out: number[] = [];
    for (let block = 0; out.length < count; block++) {
      const digest = createHash("sha256")
        .update(`${req.modelId}\0${req.imageSha256}\0${req.prompt}\0${block}`)
        .digest();
      for (const byte of digest) {
        if (out.length === count) break;
        // The last dimension is the absolute gripper (RLDS: 0 = closed, 1 = open), which passes
        // through un-normalized: keep it to the bins in [0, 1] (the lower token ids).
        const gripper = out.length % actionDim === actionDim - 1;
        out.push(MIN_ACTION_TOKEN + (gripper ? byte >> 1 : byte));
      }
    }
    return out;
  }

  /**
   * The pi0-like chunk for one request (exported for tests): H steps of D continuous values in
   * [-1, 1] (normalized, as pi0's action expert outputs them before un-normalization), seeded
   * from SHA-256(model id, image hash, prompt). Each arm dimension follows a low-frequency curve
   * over the horizon, `c + a sin(2 pi f t / H + phi)` with f in [0.25, 0.75] cycles per horizon,
   * so (at H = 10) consecutive steps differ by at most about 0.3, like a real trajectory. The last
   * dimension (gripper) holds open or closed, or switches once along a tanh edge; it is never
   * exactly +-1, so un-normalized it stays inside the statistics' gripper range.
   */
  static trajectory(
    req: Pick<BackendRequest, "modelId" | "prompt"> & { imageSha256: string },
    horizon: number,
    actionDim: number,
  ): number[][] {
    const u = uniforms(`${req.modelId}\0${req.imageSha256}\0${req.prompt}\0trajectory`, 4 * actionDim);
    const at = (i: number) => u[i] as number;
    const curves = Array.from({ length: actionDim }, (_, d) => {
      const [p0, p1, p2, p3] = [at(4 * d), at(4 * d + 1), at(4 * d + 2), at(4 * d + 3)];
      if (d === actionDim - 1 && actionDim > 1) {
        // Gripper: start open (+) or closed (-); switch at a step inside the horizon half the time.
        const sign = p0 < 0.5 ? 1 : -1;
        const switchAt = p1 < 0.5 ? 1 + p2 * (horizon - 2) : Number.POSITIVE_INFINITY;
        return (t: number) =>
          TRAJECTORY_GRIPPER_BOUND * (switchAt === Number.POSITIVE_INFINITY ? sign : -sign * Math.tanh(t - switchAt));
      }
      const amplitude = 0.2 + 0.4 * p0;
      const centre = (p1 - 0.5) * 2 * (TRAJECTORY_ARM_BOUND - amplitude);
      const cycles = 0.25 + 0.5 * p2;
      const phase = 2 * Math.PI * p3;
      return (t: number) => centre + amplitude * Math.sin((2 * Math.PI * cycles * t) / horizon + phase);
    });
    return Array.from({ length: horizon }, (_, t) => curves.map((f) => f(t)));
  }

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    const delay = this.options.latencyMs + this.options.perItemMs * batch.length;
    if (delay > 0) await sleep(delay);
    const { actionDim: d, chunk: h } = this.options;
    return batch.map((req) => {
      if (this.options.output === "trajectory") {
        return { kind: "normalized", actions: MockBackend.trajectory({ ...req, imageSha256: req.image.sha256 }, h, d) };
      }
      const tokens = MockBackend.tokens({ ...req, imageSha256: req.image.sha256 }, d * h, d);
      if (h === 1) return { kind: "tokens", tokens };
      const actions = Array.from({ length: h }, (_, i) => tokens.slice(i * d, (i + 1) * d).map(decodeToken));
      return { kind: "normalized", actions };
    });
  }

  async health(): Promise<CheckResult> {
    return { status: "ok", detail: "mock backend (deterministic, not a policy)" };
  }

  async warmUp(): Promise<void> {}

  async close(): Promise<void> {}
}
