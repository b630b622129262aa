import { createServer, type Server, type Socket } from "node:net";

/**
 * A stand-in Redis on 127.0.0.1 that speaks just enough RESP2 for ioredis to connect and
 * reach `ready` (HELLO, INFO, CLIENT SETINFO, PING): tests of connection handling that must
 * not need a real Redis. `drop()` cuts every connection and stops listening, like a crash.
 */
export interface FakeRedis {
  readonly port: number;
  drop(): Promise<void>;
}

const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;

/** Reads whole RESP arrays of bulk strings from `buf`; returns the commands and the rest. */
function parse(buf: string): { commands: string[][]; rest: string } {
  const commands: string[][] = [];
  let at = 0;
  for (;;) {
    const m = /^\*(\d+)\r\n/.exec(buf.slice(at));
    if (m === null) break;
    let p = at + m[0].length;
    const args: string[] = [];
    let complete = true;
    for (let i = 0; i < Number(m[1]); i++) {
      const h = /^\$(\d+)\r\n/.exec(buf.slice(p));
      if (h === null || buf.length < p + h[0].length + Number(h[1]) + 2) {
        complete = false;
        break;
      }
      p += h[0].length;
      args.push(buf.slice(p, p + Number(h[1])));
      p += Number(h[1]) + 2;
    }
    if (!complete) break;
    commands.push(args);
    at = p;
  }
  return { commands, rest: buf.slice(at) };
}

function reply(args: string[]): string {
  switch (args[0]?.toUpperCase()) {
    case "HELLO":
      return `*4\r\n${bulk("server")}${bulk("redis")}${bulk("proto")}:2\r\n`;
    case "INFO":
      return bulk("# Server\r\nredis_version:7.2.0\r\nloading:0\r\n");
    case "PING":
      return "+PONG\r\n";
    default:
      return "+OK\r\n";
  }
}

export async function startFakeRedis(port = 0): Promise<FakeRedis> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let pending = "";
    socket.on("data", (chunk) => {
      const { commands, rest } = parse(pending + chunk.toString("latin1"));
      pending = rest;
      for (const c of commands) socket.write(reply(c));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    async drop() {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
