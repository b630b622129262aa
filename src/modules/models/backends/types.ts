import type { CheckResult } from "../../../platform/health.ts";
import type { QueueTrace } from "../../../platform/tracing.ts";
import type { PreparedImage } from "../../inference/images.ts";

/** One item of a batch, already preprocessed. */
export interface BackendRequest {
  readonly modelId: string;
  readonly image: PreparedImage;
  /** The rendered prompt (template applied, instruction lower-cased when the model says so). */
  readonly prompt: string;
  /** The instruction as the caller sent it (remote OpenVLA servers render their own prompt). */
  readonly instruction: string;
  readonly unnormKey: string;
  /**
   * Tracing on: this request's queue and model spans. Remote backends send `trace.context` on
   * as the `traceparent` header of their call.
   */
  readonly trace?: QueueTrace | undefined;
}

/**
 * What a backend produced for one item, before the engine turns it into robot actions:
 * - `tokens`: D action-token ids -> OpenVLA codec -> un-normalization;
 * - `normalized`: an (H, D) chunk in [-1, 1] -> un-normalization;
 * - `actions`: an (H, D) chunk already in robot units (remote servers that un-normalize).
 */
export type BackendOutput =
  | { readonly kind: "tokens"; readonly tokens: readonly number[] }
  | { readonly kind: "normalized"; readonly actions: readonly (readonly number[])[] }
  | { readonly kind: "actions"; readonly actions: readonly (readonly number[])[] };

/** Per-item outcome: an output, or the error for that item only. */
export type BackendResult = BackendOutput | Error;

export interface EndpointReport {
  readonly url: string;
  /** closed (usable), open (rejecting until the cooldown ends) or half_open (one trial allowed). */
  readonly circuit: "closed" | "open" | "half_open";
  /** The last active health probe succeeded (true when never probed). */
  readonly probe_ok: boolean;
  readonly consecutive_failures: number;
  readonly outstanding: number;
  readonly last_error: string | null;
}

export type BackendKind = "mock" | "onnx" | "openvla-http" | "kserve-v2";

export interface ModelBackend {
  readonly kind: BackendKind;
  /** Results are in the order of `batch`. Throwing fails the whole batch. */
  infer(batch: readonly BackendRequest[]): Promise<BackendResult[]>;
  health(): Promise<CheckResult>;
  /** Remote backends: each endpoint's circuit (the deep health route); local backends have none. */
  endpoints?(): EndpointReport[];
  /** Loads weights / checks endpoints; the model is `ready` once this resolves. */
  warmUp(): Promise<void>;
  close(): Promise<void>;
}
