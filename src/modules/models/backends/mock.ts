import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { CheckResult } from "../../../platform/health.ts";
import { decodeToken, MIN_ACTION_TOKEN } from "../action-codec.ts";
import type { BackendRequest, BackendResult, ModelBackend } from "./types.ts";

export interface MockBackendOptions {
  readonly actionDim: number;
  readonly chunk: number;
  /** Simulated model time per batch call. */
  readonly latencyMs: number;
  /** Extra simulated time per item of the batch. */
  readonly perItemMs: number;
}

/**
 * Deterministic stand-in for a VLA: action-token ids derived from SHA-256 of
 * (model id, image hash, prompt), in 31744..31999, then through the real codec. Responses are
 * labelled `backend: "mock"` by the engine. Not a policy: for API-flow and load testing only.
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

  async infer(batch: readonly BackendRequest[]): Promise<BackendResult[]> {
    const delay = this.options.latencyMs + this.options.perItemMs * batch.length;
    if (delay > 0) await sleep(delay);
    const { actionDim: d, chunk: h } = this.options;
    return batch.map((req) => {
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
