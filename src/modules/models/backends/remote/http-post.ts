import http from "node:http";
import https from "node:https";
import { createGuardedAgents, type EgressGuard } from "../../../../platform/egress.ts";
import { RemoteCallError } from "./endpoint-pool.ts";

export interface PostAnswer {
  readonly status: number;
  readonly body: Buffer;
  readonly headers: http.IncomingHttpHeaders;
}

export type Agents = { http: http.Agent; https: https.Agent; close(): void };

/**
 * Keep-alive agents for remote model calls: one connection per concurrent call, reused.
 * `node:http` rather than `fetch`: for a 200 KB json_numpy body, undici's fetch wrote the body
 * as an iterable of chunks and cost about 0.8 ms of CPU per call on the 2-core development
 * machine (bench/robot-clients.bench.ts, remote scenario); one `end(body)` is one write.
 */
export function createAgents(egress?: EgressGuard): Agents {
  if (egress !== undefined) return createGuardedAgents(egress.policy, egress.resolver);
  const agents = {
    http: new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, scheduling: "lifo" }),
    https: new https.Agent({ keepAlive: true, keepAliveMsecs: 1000, scheduling: "lifo" }),
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
  return agents;
}

/**
 * POSTs `body` to `url` (or GETs it, `method`) and reads the answer, refusing more than `maxBytes` (remote answers
 * are bounded like user input). An aborted `signal` destroys the request; the caller's pool
 * maps that to a timeout. Network errors reject with the socket's error. Redirects are never
 * followed (node:http does not): a 3xx is just a status for the caller to refuse.
 */
export function postBytes(
  url: string,
  body: Buffer | string,
  headers: Record<string, string>,
  options: { signal: AbortSignal; maxBytes: number; agents: Agents; method?: "POST" | "GET" },
): Promise<PostAnswer> {
  const u = new URL(url);
  const secure = u.protocol === "https:";
  const mod = secure ? https : http;
  return new Promise<PostAnswer>((resolve, reject) => {
    const { signal, maxBytes } = options;
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const req = mod.request(
      u,
      {
        method: options.method ?? "POST",
        agent: secure ? options.agents.https : options.agents.http,
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
      },
      (res) => {
        const declared = Number(res.headers["content-length"] ?? "0");
        if (declared > maxBytes) {
          res.destroy();
          reject(new RemoteCallError("invalid_answer", `answer of ${declared} bytes exceeds the limit of ${maxBytes}`));
          return;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        res.on("data", (c: Buffer) => {
          total += c.byteLength;
          if (total > maxBytes) {
            res.destroy();
            reject(new RemoteCallError("invalid_answer", `answer exceeds the limit of ${maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => {
          signal.removeEventListener("abort", onAbort);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
          });
        });
        res.on("error", reject);
      },
    );
    const onAbort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", (e) => {
      signal.removeEventListener("abort", onAbort);
      reject(e);
    });
    req.end(body);
  });
}
