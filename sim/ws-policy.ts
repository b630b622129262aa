import WebSocket from "ws";
import type { Observation } from "./episode.ts";
import {
  InferenceError,
  type ProtocolClient,
  ruleNames,
  type ServerAnswer,
  type ServerOptions,
} from "./server-policy.ts";
import { type FloatArray, frameJsonNumpy, packOpenpi, rows, unpackOpenpi } from "./wire.ts";

/**
 * The WebSocket protocols, one connection per episode (docs/streaming.md).
 * - Native `/v1/stream`: JSON messages; `start` with the instruction and `chunk_aggregation:
 *   "latest"` (the chunk of a frame is then the model's own chunk, as openpi answers it), one
 *   `must_go` frame per inference with the lossless json_numpy image and the robot state; a
 *   frame dropped for the tier's frame-rate ceiling is sent again after 1/max_fps.
 * - openpi `/v1/openpi`: msgpack-numpy observations (`observation/image` uint8 HxWx3,
 *   `observation/state`, `prompt`), `actions` [H, 7] float32 back; errors are text frames.
 */

type Message = { data: Buffer; isBinary: boolean };

/** A WebSocket whose messages queue until asked for; the upgrade's refusal becomes an InferenceError. */
class Connection {
  private readonly ws: WebSocket;
  private readonly queue: Message[] = [];
  private waiter: ((m: Message | Error) => void) | null = null;
  private failure: Error | null = null;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data, isBinary) => this.push({ data: data as Buffer, isBinary }));
    ws.on("close", (code, reason) =>
      this.fail(new InferenceError("WebSocket", code, null, `closed (${code}) ${reason.toString()}`.trim())),
    );
    ws.on("error", (e) => this.fail(e));
  }

  static open(url: string, headers: Record<string, string>, timeoutMs: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, handshakeTimeout: timeoutMs });
      ws.once("unexpected-response", (_req, res) => {
        // A refused upgrade: the problem+json body says why. Closing the half-open socket
        // emits an error of its own, which is not the reason.
        ws.on("error", () => {});
        let body = "";
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on("end", () => {
          let code: string | null = null;
          let detail = body;
          try {
            const problem = JSON.parse(body) as { code?: unknown; detail?: unknown };
            if (typeof problem.code === "string") code = problem.code;
            if (typeof problem.detail === "string") detail = problem.detail;
          } catch {
            // Not problem+json: the body is the detail.
          }
          reject(
            new InferenceError(`WebSocket ${new URL(url).pathname}`, res.statusCode ?? 0, code, detail.slice(0, 500)),
          );
          ws.terminate();
        });
      });
      ws.once("error", reject);
      ws.once("open", () => {
        ws.off("error", reject);
        resolve(new Connection(ws));
      });
    });
  }

  private push(m: Message): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(m);
    } else this.queue.push(m);
  }

  private fail(e: Error): void {
    this.failure ??= e;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(e);
    }
  }

  send(data: string | Buffer): void {
    this.ws.send(data);
  }

  next(timeoutMs: number): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new InferenceError("WebSocket", 0, "timeout", `no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else resolve(m);
      };
    });
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once("close", () => resolve());
      this.ws.close(1000);
      setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000).unref();
    });
  }
}

const wsBase = (url: string) => url.replace(/^http/, "ws");

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

type StreamMessage = {
  type?: unknown;
  seq?: unknown;
  code?: unknown;
  message?: unknown;
  reason?: unknown;
  max_fps?: unknown;
  inference_id?: unknown;
  action?: unknown;
  action_chunk?: unknown;
  safety?: { status?: unknown; raw_action?: unknown; violations?: unknown };
  timing?: { total_ms?: unknown };
};

export function streamClient(options: ServerOptions): ProtocolClient {
  const timeoutMs = options.timeoutMs ?? 30_000;
  let conn: Connection | null = null;
  let seq = 0;
  const receive = async (c: Connection): Promise<StreamMessage> => {
    const m = await c.next(timeoutMs);
    return JSON.parse(m.data.toString()) as StreamMessage;
  };
  const problem = (m: StreamMessage) =>
    new InferenceError(
      "WS /v1/stream",
      0,
      typeof m.code === "string" ? m.code : null,
      typeof m.message === "string" ? m.message : `session ${String(m.type)}: ${String(m.reason ?? "")}`,
    );
  return {
    protocol: "stream",
    async beginEpisode(instruction) {
      conn = await Connection.open(`${wsBase(options.url)}/v1/stream`, { "x-api-key": options.key }, timeoutMs);
      seq = 0;
      conn.send(
        JSON.stringify({
          type: "start",
          robot_id: options.robotId ?? "sim-arm",
          ...(options.model ? { model: options.model } : {}),
          ...(options.unnormKey ? { unnorm_key: options.unnormKey } : {}),
          instruction,
          chunk_aggregation: "latest",
        }),
      );
      for (;;) {
        const m = await receive(conn);
        if (m.type === "started") return;
        if (m.type === "error") throw problem(m);
      }
    },
    async infer(observation: Observation): Promise<ServerAnswer> {
      const c = conn;
      if (!c || !observation.frame) throw new Error("the stream policy needs a started episode and rendered frames");
      const [x, y, z] = observation.state.eePosition;
      for (;;) {
        const mySeq = seq++;
        c.send(
          JSON.stringify({
            type: "frame",
            seq: mySeq,
            image: frameJsonNumpy(observation.frame),
            instruction: observation.instruction,
            robot_state: { ee_position: [x, y, z], gripper: observation.state.gripper },
            must_go: true,
          }),
        );
        let m: StreamMessage;
        for (;;) {
          m = await receive(c);
          // An error without a seq (stream time used up, suspension) or `stopped` ends the session.
          if ((m.type === "error" && m.seq === undefined) || m.type === "stopped") throw problem(m);
          if (m.seq === mySeq && (m.type === "action" || m.type === "dropped" || m.type === "error")) break;
        }
        if (m.type === "error") throw problem(m);
        if (m.type === "dropped") {
          // rate_ceiling (frames faster than the tier allows) or overloaded: send it again shortly.
          const fps = typeof m.max_fps === "number" && m.max_fps > 0 ? m.max_fps : 10;
          await sleep(1000 / fps);
          continue;
        }
        const chunk = Array.isArray(m.action_chunk) ? (m.action_chunk as number[][]) : null;
        return {
          actions: chunk && chunk.length > 0 ? chunk : [m.action as number[]],
          serverMs: typeof m.timing?.total_ms === "number" ? m.timing.total_ms : null,
          safety: typeof m.safety?.status === "string" ? m.safety.status : "unknown",
          violations: ruleNames(m.safety?.violations),
          rawAction: Array.isArray(m.safety?.raw_action) ? (m.safety.raw_action as number[]) : null,
          inferenceId: typeof m.inference_id === "string" ? m.inference_id : null,
        };
      }
    },
    async endEpisode() {
      const c = conn;
      conn = null;
      if (!c) return;
      try {
        c.send(JSON.stringify({ type: "stop" }));
        for (;;) if ((await receive(c)).type === "stopped") break;
      } catch {
        // Already closed: nothing to stop.
      }
      await c.close();
    },
  };
}

type OpenpiReply = {
  actions?: unknown;
  server_timing?: { infer_ms?: unknown };
  safety?: { status?: unknown; violations?: unknown };
  inference_id?: unknown;
};

export function openpiClient(options: ServerOptions): ProtocolClient {
  const timeoutMs = options.timeoutMs ?? 30_000;
  let conn: Connection | null = null;
  return {
    protocol: "openpi",
    async beginEpisode() {
      const query = new URLSearchParams({
        robot_id: options.robotId ?? "sim-arm",
        ...(options.model ? { model: options.model } : {}),
        ...(options.unnormKey ? { unnorm_key: options.unnormKey } : {}),
      });
      const c = await Connection.open(
        `${wsBase(options.url)}/v1/openpi?${query}`,
        { authorization: `Api-Key ${options.key}` },
        timeoutMs,
      );
      await c.next(timeoutMs); // the metadata map
      conn = c;
    },
    async infer(observation: Observation): Promise<ServerAnswer> {
      const c = conn;
      if (!c || !observation.frame) throw new Error("the openpi policy needs a started episode and rendered frames");
      c.send(
        packOpenpi({
          "observation/image": observation.frame,
          "observation/state": Float32Array.from(observation.state.proprio),
          prompt: observation.instruction,
        }),
      );
      const m = await c.next(timeoutMs);
      if (!m.isBinary) {
        // openpi reports failures as the text `code: detail`, then closes.
        const text = m.data.toString();
        const colon = text.indexOf(":");
        throw new InferenceError("WS /v1/openpi", 0, colon > 0 ? text.slice(0, colon) : null, text);
      }
      const reply = unpackOpenpi(m.data) as OpenpiReply;
      const actions = reply.actions as FloatArray | undefined;
      if (!actions || !Array.isArray(actions.values))
        throw new InferenceError("WS /v1/openpi", 0, null, "no actions in the reply");
      return {
        actions: rows(actions),
        serverMs: typeof reply.server_timing?.infer_ms === "number" ? reply.server_timing.infer_ms : null,
        safety: typeof reply.safety?.status === "string" ? reply.safety.status : "unknown",
        violations: ruleNames(reply.safety?.violations),
        rawAction: null,
        inferenceId: typeof reply.inference_id === "string" ? reply.inference_id : null,
      };
    },
    async endEpisode() {
      const c = conn;
      conn = null;
      await c?.close();
    },
  };
}
