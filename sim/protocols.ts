import { actClient, restClient } from "./rest-policy.ts";
import {
  InferenceError,
  type Protocol,
  type ProtocolClient,
  type ServerOptions,
  type ServerPolicy,
  type ServerPolicyOptions,
  serverPolicy,
} from "./server-policy.ts";
import { openpiClient, streamClient } from "./ws-policy.ts";

/** The policy of one protocol against a running server (all four share serverPolicy). */
export function protocolPolicy(protocol: Protocol, options: ServerOptions & ServerPolicyOptions): ServerPolicy {
  return serverPolicy(clientFor(protocol, options), options);
}

export function clientFor(protocol: Protocol, options: ServerOptions): ProtocolClient {
  switch (protocol) {
    case "rest":
      return restClient(options);
    case "act":
      return actClient(options);
    case "stream":
      return streamClient(options);
    case "openpi":
      return openpiClient(options);
  }
}

export type EpisodeOutcome = { seed: number; instruction: string; success: boolean; steps: number };

/**
 * Reports an episode's outcome on its last inference (docs/feedback.md): `success` with rating 5
 * when the task was done; else `success` with rating 1 and a `failure` of type `timeout` (the
 * step limit ran out). Returns the feedback ids.
 */
export async function sendEpisodeFeedback(
  options: Pick<ServerOptions, "url" | "key" | "fetch" | "timeoutMs">,
  inferenceId: string,
  outcome: EpisodeOutcome,
): Promise<string[]> {
  const what = `sim episode seed ${outcome.seed}: "${outcome.instruction}" ${outcome.success ? "done" : "not done"} in ${outcome.steps} steps`;
  const posts: [string, Record<string, unknown>][] = [
    ["/v1/feedback/success", { inference_id: inferenceId, rating: outcome.success ? 5 : 1, comment: what }],
  ];
  if (!outcome.success) {
    posts.push(["/v1/feedback/failure", { inference_id: inferenceId, failure_type: "timeout", description: what }]);
  }
  const ids: string[] = [];
  for (const [path, body] of posts) {
    const response = await (options.fetch ?? fetch)(new URL(path, options.url), {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": options.key },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    const json = (await response.json().catch(() => ({}))) as { id?: unknown; code?: unknown; detail?: unknown };
    if (!response.ok) {
      throw new InferenceError(
        `POST ${path}`,
        response.status,
        typeof json.code === "string" ? json.code : null,
        String(json.detail ?? ""),
      );
    }
    if (typeof json.id === "string") ids.push(json.id);
  }
  return ids;
}
