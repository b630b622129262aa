import type { Observation } from "./episode.ts";
import {
  InferenceError,
  isAction,
  type ProtocolClient,
  ruleNames,
  type ServerAnswer,
  type ServerOptions,
  type ServerPolicy,
  type ServerPolicyOptions,
  serverPolicy,
  withRetry,
} from "./server-policy.ts";
import { decodeJsonNumpyFloats, frameJsonNumpy } from "./wire.ts";

/**
 * The HTTP protocols. REST: every step POSTs the frame (a lossless json_numpy uint8 array), the
 * instruction and the robot state to `POST /v1/inference` (docs/inference.md) and takes the
 * safe `action` (or `action_chunk`). /act: OpenVLA's deploy.py body (json_numpy image,
 * `instruction`, `unnorm_key`, robot in `X-Robot-Id`), a json_numpy float64 [7] answer, safety
 * in headers; it carries no robot state, so the server cannot check the workspace.
 */

export { type CallRecord, InferenceError } from "./server-policy.ts";
export type RestPolicyOptions = ServerOptions & ServerPolicyOptions;

type InferenceAnswer = {
  inference_id?: unknown;
  action?: unknown;
  action_chunk?: unknown;
  safety?: { status?: unknown; raw_action?: unknown; violations?: unknown };
  timing?: { total_ms?: unknown };
};

/** `waitedMs`: time spent waiting out 429s (Retry-After) before this reply, not part of its latency. */
type HttpReply = { status: number; headers: Headers; text: string; json: unknown; waitedMs: number };

async function post(options: ServerOptions, path: string, body: string, headers: Record<string, string>) {
  const doFetch = options.fetch ?? fetch;
  const endpoint = new URL(path, options.url).toString();
  let waitedMs = 0;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const counting: ServerOptions = {
    ...options,
    sleep: async (ms) => {
      const started = performance.now();
      await sleep(ms);
      waitedMs += performance.now() - started;
    },
  };
  const reply = await withRetry<Omit<HttpReply, "waitedMs">>(counting, async () => {
    const response = await doFetch(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": options.key, ...headers },
      body,
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    const text = await response.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: reported with the status.
    }
    if (response.ok) return { value: { status: response.status, headers: response.headers, text, json } };
    // REST answers problem+json; /act the string "error" with X-Problem-Code / X-Problem-Detail.
    const problem = (json !== null && typeof json === "object" ? json : {}) as { code?: unknown; detail?: unknown };
    const code = typeof problem.code === "string" ? problem.code : (response.headers.get("x-problem-code") ?? null);
    const detail =
      typeof problem.detail === "string" ? problem.detail : (response.headers.get("x-problem-detail") ?? text);
    const error = new InferenceError(`POST ${path}`, response.status, code, detail.slice(0, 500));
    if (response.status !== 429) throw error;
    const retryAfter = Number(response.headers.get("retry-after") ?? "1");
    return { limited: error, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
  });
  return { ...reply, waitedMs };
}

function robotStateOf(observation: Observation) {
  const [x, y, z] = observation.state.eePosition;
  return { ee_position: [x, y, z], gripper: observation.state.gripper };
}

function frameOf(observation: Observation) {
  if (!observation.frame) throw new Error("a server policy needs rendered frames");
  return observation.frame;
}

export function restClient(options: ServerOptions): ProtocolClient {
  return {
    protocol: "rest",
    async infer(observation): Promise<ServerAnswer> {
      const body = JSON.stringify({
        image: frameJsonNumpy(frameOf(observation)),
        instruction: observation.instruction,
        robot_id: options.robotId ?? "sim-arm",
        ...(options.model ? { model: options.model } : {}),
        ...(options.unnormKey ? { unnorm_key: options.unnormKey } : {}),
        robot_state: robotStateOf(observation),
      });
      const reply = await post(options, "/v1/inference", body, {});
      const answer = (reply.json ?? {}) as InferenceAnswer;
      if (!isAction(answer.action))
        throw new InferenceError("POST /v1/inference", reply.status, null, "no 7-D action in the answer");
      const chunk =
        Array.isArray(answer.action_chunk) && answer.action_chunk.every(isAction) ? answer.action_chunk : null;
      return {
        actions: chunk && chunk.length > 0 ? chunk : [answer.action],
        serverMs: typeof answer.timing?.total_ms === "number" ? answer.timing.total_ms : null,
        safety: typeof answer.safety?.status === "string" ? answer.safety.status : "unknown",
        violations: ruleNames(answer.safety?.violations),
        rawAction: isAction(answer.safety?.raw_action) ? answer.safety.raw_action : null,
        inferenceId: typeof answer.inference_id === "string" ? answer.inference_id : null,
        waitedMs: reply.waitedMs,
      };
    },
  };
}

/** /act names no model: it serves the API key's model, else the server's default model (`options.model` is not sent). */
export function actClient(options: ServerOptions): ProtocolClient {
  return {
    protocol: "act",
    async infer(observation): Promise<ServerAnswer> {
      const body = JSON.stringify({
        image: frameJsonNumpy(frameOf(observation)),
        instruction: observation.instruction,
        ...(options.unnormKey ? { unnorm_key: options.unnormKey } : {}),
      });
      const reply = await post(options, "/act", body, { "x-robot-id": options.robotId ?? "sim-arm" });
      const decoded = decodeJsonNumpyFloats(reply.json);
      if (!decoded || !isAction(decoded.values))
        throw new InferenceError("POST /act", reply.status, null, "no 7-D action in the answer");
      const timing = /total_ms;dur=([0-9.]+)/.exec(reply.headers.get("server-timing") ?? "");
      return {
        actions: [decoded.values],
        serverMs: timing ? Number(timing[1]) : null,
        safety: reply.headers.get("x-safety-status") ?? "unknown",
        // `rule:severity, ...`
        violations: (reply.headers.get("x-safety-violations") ?? "")
          .split(",")
          .map((v) => v.trim().split(":")[0] ?? "")
          .filter((v) => v !== ""),
        rawAction: null,
        inferenceId: reply.headers.get("x-inference-id"),
        waitedMs: reply.waitedMs,
      };
    },
  };
}

/** A REST policy (kept for callers of the first version): serverPolicy over restClient. */
export function restPolicy(options: RestPolicyOptions): ServerPolicy {
  return serverPolicy(restClient(options), options);
}
