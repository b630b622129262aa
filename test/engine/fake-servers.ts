import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A loopback HTTP server whose handler a test can swap; counts hits. */
export interface FakeServer {
  readonly url: string;
  hits: number;
  handler: (req: IncomingMessage, body: Buffer, res: ServerResponse) => unknown;
  close(): Promise<void>;
}

export async function startServer(handler: FakeServer["handler"]): Promise<FakeServer> {
  const state = { hits: 0, handler } as FakeServer & { server?: Server };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      state.hits += 1;
      Promise.resolve(state.handler(req, Buffer.concat(chunks), res)).catch(() => {
        res.statusCode = 500;
        res.end();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  return state;
}

export function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
