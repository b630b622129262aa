import type { Observation, Policy } from "./episode.ts";
import { encodeJpeg } from "./render.ts";

/**
 * A policy that asks a running server: every step POSTs the frame (JPEG, base64), the
 * instruction and the robot state to `POST /v1/inference` (docs/inference.md) and applies the
 * `action` it answers (the safe action, after the server's safety gate). Latency and safety
 * verdicts are recorded for the report.
 */

export type RestPolicyOptions = {
  /** Server base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** An API key with the `inference` scope. */
  key: string;
  robotId?: string;
  model?: string;
  unnormKey?: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
  /** On 429, wait for Retry-After (at most this many seconds) and retry, at most 3 times; 0 = fail at once. */
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
  /** `timing.total_ms` inside the server. */
  serverMs: number | null;
  safety: string;
  action: number[];
  rawAction: number[] | null;
};

export class InferenceError extends Error {
  readonly status: number;
  readonly code: string | null;
  constructor(status: number, code: string | null, detail: string) {
    super(`POST /v1/inference: ${status}${code ? ` ${code}` : ""}: ${detail}`);
    this.name = "InferenceError";
    this.status = status;
    this.code = code;
  }
}

type InferenceAnswer = {
  action?: unknown;
  safety?: { status?: unknown; raw_action?: unknown };
  timing?: { total_ms?: unknown };
};

const isActionArray = (v: unknown): v is number[] =>
  Array.isArray(v) && v.length === 7 && v.every((x) => typeof x === "number" && Number.isFinite(x));

export function restPolicy(options: RestPolicyOptions): { policy: Policy; calls: CallRecord[] } {
  const calls: CallRecord[] = [];
  const doFetch = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const endpoint = new URL("/v1/inference", options.url).toString();
  const maxWait = options.maxRetryWaitSeconds ?? 60;

  const policy: Policy = async (observation: Observation) => {
    if (!observation.frame) throw new Error("the REST policy needs rendered frames");
    const jpeg = await encodeJpeg(observation.frame);
    const [x, y, z] = observation.state.eePosition;
    const body = JSON.stringify({
      image: jpeg.toString("base64"),
      instruction: observation.instruction,
      robot_id: options.robotId ?? "sim-arm",
      ...(options.model ? { model: options.model } : {}),
      ...(options.unnormKey ? { unnorm_key: options.unnormKey } : {}),
      robot_state: { ee_position: [x, y, z], gripper: observation.state.gripper },
    });
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      const response = await doFetch(endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": options.key },
        body,
        signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
      });
      const latencyMs = performance.now() - started;
      const text = await response.text();
      let json: unknown = null;
      try {
        json = JSON.parse(text);
      } catch {
        // Not JSON: reported below with the status.
      }
      if (response.status === 429 && attempt < 3 && maxWait > 0) {
        const retryAfter = Number(response.headers.get("retry-after") ?? "1");
        const seconds = Math.min(maxWait, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 1);
        options.onWait?.(seconds);
        await sleep(seconds * 1000);
        continue;
      }
      if (!response.ok) {
        const problem = (json ?? {}) as { code?: unknown; detail?: unknown; title?: unknown };
        const code = typeof problem.code === "string" ? problem.code : null;
        const detail =
          typeof problem.detail === "string"
            ? problem.detail
            : typeof problem.title === "string"
              ? problem.title
              : text;
        throw new InferenceError(response.status, code, detail.slice(0, 500));
      }
      const answer = (json ?? {}) as InferenceAnswer;
      if (!isActionArray(answer.action)) throw new InferenceError(response.status, null, "no 7-D action in the answer");
      calls.push({
        latencyMs,
        serverMs: typeof answer.timing?.total_ms === "number" ? answer.timing.total_ms : null,
        safety: typeof answer.safety?.status === "string" ? answer.safety.status : "unknown",
        action: answer.action,
        rawAction: isActionArray(answer.safety?.raw_action) ? answer.safety.raw_action : null,
      });
      return answer.action;
    }
  };
  return { policy, calls };
}
