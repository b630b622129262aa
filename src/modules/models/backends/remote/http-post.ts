import http from "node:http";
import https from "node:https";
import { RemoteCallError } from "./endpoint-pool.ts";

export interface PostAnswer {
  readonly status: number;
  readonly body: Buffer;
}

/**
 * Keep-alive agents for remote model calls: one connection per concurrent call, reused.
 * `node:http` rather than `fetch`: for a 200 KB json_numpy body, undici's fetch wrote the body
 * as an iterable of chunks and cost about 0.8 ms of CPU per call on the 2-core development
 * machine (bench/robot-clients.bench.ts, remote scenario); one `end(body)` is one write.
 */
export function createAgents(): { http: http.Agent; https: https.Agent; close(): void } {
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
 * POSTs `body` to `url` and reads the answer, refusing more than `maxBytes` (remote answers
 * are bounded like user input). An aborted `signal` destroys the request; the caller's pool
 * maps that to a timeout. Network errors reject with the socket's error.
 */
export function postBytes(
  url: string,
  body: Buffer | string,
  headers: Record<string, string>,
  options: { signal: AbortSignal; maxBytes: number; agents: ReturnType<typeof createAgents> },
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
        method: "POST",
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
