import type { Observation, Policy } from "./episode.ts";

/**
 * The part every protocol shares: a protocol client answers one observation with a chunk of
 * safe actions (one row for OpenVLA-style models), and `serverPolicy` turns it into a policy
 * that executes the first `executeSteps` rows of each chunk before asking again, records every
 * call (latency, safety verdict, inference id) and groups the inference ids per episode (for
 * feedback). REST and /act live in rest-policy.ts, the native stream and openpi in ws-policy.ts.
 */

export const PROTOCOLS = ["rest", "act", "stream", "openpi"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export type ServerOptions = {
  /** Server base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** An API key with the `inference` scope. */
  key: string;
  robotId?: string;
  model?: string;
  unnormKey?: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** HTTP protocols: on 429, wait for Retry-After (at most this many seconds) and retry, at most 3 times; 0 = fail at once. */
  maxRetryWaitSeconds?: number;
  /** For tests. */
  fetch?: typeof fetch;
  /** For tests: how to wait. */
  sleep?: (ms: number) => Promise<void>;
  /** Told when the policy waits on a 429. */
  onWait?: (seconds: number) => void;
};

export type CallRecord = {
  /** Round trip seen by the client, milliseconds. */
  latencyMs: number;
  /** The server's own time for the call (`timing.total_ms`, openpi `server_timing.infer_ms`), when it says. */
  serverMs: number | null;
  safety: string;
  /** Rule types the safety gate found violated (`workspace`, `linear_velocity`, ...), deduplicated. */
  violations: string[];
  /** The first safe action of the answer. */
  action: number[];
  /** The model's first action before safety, when the protocol returns it (REST, stream). */
  rawAction: number[] | null;
  inferenceId: string | null;
  /** Rows in the answered chunk (1 for OpenVLA-style models). */
  chunk: number;
};

/** One answer of a protocol client: the safe chunk (H x 7) and what the server said about it. */
export type ServerAnswer = Omit<CallRecord, "latencyMs" | "action" | "chunk"> & {
  actions: number[][];
  /** Time spent waiting out 429s (Retry-After) before the answer: not counted in the call's latency. */
  waitedMs?: number;
};

export interface ProtocolClient {
  readonly protocol: Protocol;
  infer(observation: Observation): Promise<ServerAnswer>;
  /** Opens what an episode needs (a stream connection); called before its first step. */
  beginEpisode?(instruction: string): Promise<void>;
  /** Closes what beginEpisode opened. */
  endEpisode?(): Promise<void>;
}

export class InferenceError extends Error {
  readonly status: number;
  readonly code: string | null;
  constructor(where: string, status: number, code: string | null, detail: string) {
    super(`${where}: ${status}${code ? ` ${code}` : ""}: ${detail}`);
    this.name = "InferenceError";
    this.status = status;
    this.code = code;
  }
}

/** Distinct rule names of a violations list (`[{type}]` in REST and streams, `[{rule}]` in openpi). */
export function ruleNames(violations: unknown): string[] {
  if (!Array.isArray(violations)) return [];
  const names = violations.map(
    (v) => (v as { type?: unknown; rule?: unknown })?.type ?? (v as { rule?: unknown })?.rule,
  );
  return [...new Set(names.filter((n): n is string => typeof n === "string"))];
}

export const isAction = (v: unknown): v is number[] =>
  Array.isArray(v) && v.length === 7 && v.every((x) => typeof x === "number" && Number.isFinite(x));

export type ServerPolicy = {
  policy: Policy;
  calls: CallRecord[];
  protocol: Protocol;
  beginEpisode(instruction: string): Promise<void>;
  /** Ends the episode and returns the inference ids of its calls, in order. */
  endEpisode(): Promise<string[]>;
};

export type ServerPolicyOptions = {
  /** Rows of each chunk to execute before asking again (default: the whole chunk). */
  executeSteps?: number;
};

export function serverPolicy(client: ProtocolClient, options: ServerPolicyOptions = {}): ServerPolicy {
  const calls: CallRecord[] = [];
  let plan: number[][] = [];
  let episodeIds: string[] = [];
  const policy: Policy = async (observation) => {
    const next = plan.shift();
    if (next) return next;
    const started = performance.now();
    const answer = await client.infer(observation);
    const latencyMs = performance.now() - started - (answer.waitedMs ?? 0);
    const first = answer.actions[0];
    if (!first || !answer.actions.every(isAction)) {
      throw new InferenceError(client.protocol, 200, null, "no 7-D action in the answer");
    }
    calls.push({
      latencyMs,
      serverMs: answer.serverMs,
      safety: answer.safety,
      violations: answer.violations,
      action: first,
      rawAction: answer.rawAction,
      inferenceId: answer.inferenceId,
      chunk: answer.actions.length,
    });
    if (answer.inferenceId !== null) episodeIds.push(answer.inferenceId);
    const n = Math.max(1, Math.min(options.executeSteps ?? answer.actions.length, answer.actions.length));
    plan = answer.actions.slice(1, n);
    return first;
  };
  return {
    policy,
    calls,
    protocol: client.protocol,
    async beginEpisode(instruction) {
      plan = [];
      episodeIds = [];
      await client.beginEpisode?.(instruction);
    },
    async endEpisode() {
      plan = [];
      await client.endEpisode?.();
      return episodeIds;
    },
  };
}

/** Runs fn again after a 429 (`limited`) while the options allow, waiting Retry-After. */
export async function withRetry<T>(
  options: ServerOptions,
  fn: () => Promise<{ limited: InferenceError; retryAfter: number | null } | { value: T }>,
): Promise<T> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const maxWait = options.maxRetryWaitSeconds ?? 60;
  for (let attempt = 0; ; attempt++) {
    const outcome = await fn();
    if ("value" in outcome) return outcome.value;
    if (attempt >= 3 || maxWait <= 0) throw outcome.limited;
    const retryAfter = outcome.retryAfter;
    const seconds = Math.min(
      maxWait,
      retryAfter !== null && Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 1,
    );
    options.onWait?.(seconds);
    await sleep(seconds * 1000);
  }
}
