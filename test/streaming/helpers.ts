import { randomBytes } from "node:crypto";
import { connect as connectTcp, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { pack, unpack } from "msgpackr";
import WebSocket from "ws";
import { buildInferenceApp, type InferenceTestContext } from "../inference/helpers.ts";

export { flushLogs, jpeg, newKey } from "../inference/helpers.ts";

export interface StreamTestContext extends InferenceTestContext {
  readonly baseUrl: string;
}

/** An inference app listening on 127.0.0.1 (a real WebSocket client needs a socket). */
export async function buildStreamApp(env: Record<string, string> = {}): Promise<StreamTestContext> {
  const ctx = await buildInferenceApp(env);
  await ctx.app.listen({ port: 0, host: "127.0.0.1" });
  const addr = ctx.app.server.address();
  if (addr === null || typeof addr === "string") throw new Error("no address");
  return Object.assign(ctx, { baseUrl: `ws://127.0.0.1:${addr.port}` });
}

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/** A WebSocket client that records every message (decoded) and the close. */
export class Client {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[] = [];
  readonly raw: { data: Buffer; isBinary: boolean }[] = [];
  readonly closed: Promise<Closed>;
  private waiters: { pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }[] =
    [];

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers });
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on("error", () => {});
    this.ws.on("message", (data, isBinary) => {
      const buf = data as Buffer;
      this.raw.push({ data: buf, isBinary });
      let m: Record<string, unknown>;
      try {
        m = isBinary
          ? (unpack(buf) as Record<string, unknown>)
          : (JSON.parse(buf.toString()) as Record<string, unknown>);
      } catch {
        m = { type: "__text__", text: buf.toString() };
      }
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  opened(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
  }

  json(m: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(m));
  }

  msgpack(m: Record<string, unknown>): void {
    this.ws.send(pack(m));
  }

  /** The first message (already received or coming) matching the predicate. */
  next(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const seen = this.messages.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching message; got ${JSON.stringify(this.messages).slice(0, 2000)}`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  type(type: string, extra: (m: Record<string, unknown>) => boolean = () => true) {
    return this.next((m) => m.type === type && extra(m));
  }

  of(type: string): Record<string, unknown>[] {
    return this.messages.filter((m) => m.type === type);
  }

  close(): void {
    this.ws.close();
  }
}

export async function connect(t: StreamTestContext, key: string | null, path = "/v1/stream"): Promise<Client> {
  const c = new Client(`${t.baseUrl}${path}`, key === null ? {} : { "x-api-key": key });
  await c.opened();
  return c;
}

/** A connected, started session. */
export async function started(t: StreamTestContext, start: Record<string, unknown> = {}, key = t.key) {
  const c = await connect(t, key);
  c.json({
    type: "start",
    robot_id: "arm-1",
    instruction: "pick up the red block",
    unnorm_key: "bridge_orig",
    ...start,
  });
  const s = await c.type("started");
  return { c, s };
}

/** A raw TCP client that sends a WebSocket upgrade request and reads the answer's head. */
export interface RawUpgrade {
  readonly socket: Socket;
  /** The status line and headers of the server's answer (101, or an HTTP status). */
  readonly head: Promise<{ status: number; headers: string; body: Promise<string> }>;
  /** Resolves when the server has closed its side (the client saw end or close). */
  readonly serverClosed: Promise<void>;
  /** The first `n` bytes after the answer's head (e.g. a WebSocket frame after 101). */
  firstBytes(n: number): Promise<Buffer>;
}

export function rawUpgrade(baseUrl: string, path: string, headers: Record<string, string> = {}): RawUpgrade {
  const { hostname, port } = new URL(baseUrl);
  const socket = connectTcp(Number(port), hostname);
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n${extra}\r\n`,
  );
  socket.on("error", () => {});
  let received = Buffer.alloc(0);
  const serverClosed = new Promise<void>((resolve) => {
    socket.once("end", () => resolve());
    socket.once("close", () => resolve());
  });
  const head = new Promise<{ status: number; headers: string; body: Promise<string> }>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf("\r\n\r\n");
      if (end < 0) return;
      const text = received.subarray(0, end).toString("latin1");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      const body = new Promise<string>((res) => {
        serverClosed.then(() => res(received.subarray(end + 4).toString("utf8")));
      });
      resolve({ status, headers: text, body });
    };
    socket.on("data", onData);
    socket.once("close", () => reject(new Error("closed before an answer")));
  });
  head.catch(() => {});
  const firstBytes = async (n: number): Promise<Buffer> => {
    await head;
    for (let i = 0; i < 200; i++) {
      const start = received.indexOf("\r\n\r\n") + 4;
      if (received.length - start >= n) return received.subarray(start, start + n);
      await sleep(25);
    }
    throw new Error(`fewer than ${n} bytes after the head`);
  };
  return { socket, head, serverClosed, firstBytes };
}

/** Open TCP connections of a listening app (upgraded sockets included). */
export function serverConnections(app: InferenceTestContext["app"]): Promise<number> {
  return new Promise((resolve, reject) => {
    app.server.getConnections((err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Polls `check` until it holds (at most `tries` times, 50 ms apart); returns the last result. */
export async function eventually(check: () => Promise<boolean>, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return true;
    await sleep(50);
  }
  return check();
}
