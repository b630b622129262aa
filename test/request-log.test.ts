import { once } from "node:events";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildTestApp, type TestContext } from "./helpers/app.ts";
import { seedCustomer, seedKey } from "./helpers/limits.ts";

interface Line {
  msg?: string;
  level?: number;
  request_id?: string;
  customer_id?: string;
  responseTime?: number;
  req?: { method?: string; url?: string };
  res?: { statusCode?: number };
}

describe("request log: one line per request, when it completes", () => {
  let t: TestContext;
  const lines: Line[] = [];
  const linesOf = (requestId: string) => lines.filter((l) => l.request_id === requestId);

  beforeAll(async () => {
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        for (const s of String(chunk).split("\n")) if (s !== "") lines.push(JSON.parse(s) as Line);
        cb();
      },
    });
    t = await buildTestApp({ env: { LOG_LEVEL: "info" }, logStream });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("an authenticated call: a single `request completed` line with method, URL, status, time and customer", async () => {
    const customerId = await seedCustomer(t.database, { tier: "enterprise" });
    const { key } = await seedKey(t.database, customerId);
    const res = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history?limit=5",
      headers: { "x-api-key": key, "x-request-id": "log-one-line-1" },
    });
    expect(res.statusCode, res.body).toBe(200);
    const mine = linesOf("log-one-line-1");
    expect(mine.map((l) => l.msg)).toEqual(["request completed"]);
    const [line] = mine;
    expect(line?.req?.method).toBe("GET");
    expect(line?.req?.url).toBe("/v1/inference/history?limit=5");
    expect(line?.res?.statusCode).toBe(200);
    expect(typeof line?.responseTime).toBe("number");
    expect(line?.customer_id).toBe(customerId);
    expect(JSON.stringify(mine)).not.toContain(key);
  });

  it("an anonymous 4xx: one completion line, without customer_id", async () => {
    const res = await t.app.inject({
      method: "GET",
      url: "/v1/inference/history",
      headers: { "x-request-id": "log-one-line-2" },
    });
    expect(res.statusCode).toBe(401);
    const completed = linesOf("log-one-line-2").filter((l) => l.msg === "request completed");
    expect(completed).toHaveLength(1);
    expect(completed[0]?.res?.statusCode).toBe(401);
    expect(completed[0]?.req?.url).toBe("/v1/inference/history");
    expect(completed[0]).not.toHaveProperty("customer_id");
    expect(linesOf("log-one-line-2").some((l) => l.msg === "incoming request")).toBe(false);
  });

  it("a WebSocket upgrade keeps its `incoming request` line (its socket is handed over, never answered)", async () => {
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    const addr = t.app.server.address();
    if (addr === null || typeof addr === "string") throw new Error("no address");
    const ws = new WebSocket(`ws://127.0.0.1:${addr.port}/v1/stream`, { headers: { "x-request-id": "log-ws-1" } });
    ws.on("error", () => {});
    await Promise.race([once(ws, "open"), once(ws, "close")]);
    ws.terminate();
    const incoming = linesOf("log-ws-1").filter((l) => l.msg === "incoming request");
    expect(incoming).toHaveLength(1);
    expect(incoming[0]?.req?.url).toBe("/v1/stream");
  });
});
