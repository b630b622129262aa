import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildStreamApp, eventually, rawUpgrade, type StreamTestContext, serverConnections } from "./helpers.ts";

let t: StreamTestContext;
beforeAll(async () => {
  t = await buildStreamApp();
});
afterAll(async () => {
  await t?.close();
});

const noneLeft = () => eventually(async () => (await serverConnections(t.app)) === 0);

describe("WebSocket upgrade requests that get no WebSocket", () => {
  // Plain routes of several modules, the API docs, a route behind authentication and the 404 handler.
  const paths = ["/health/live", "/docs", "/v1/models", "/problems", "/v1/openpi", "/no/such/path"];

  it("leave no server socket behind once the client goes away", async () => {
    const clients = paths.map((p) => rawUpgrade(t.baseUrl, p));
    for (const c of clients) await c.head;
    for (const c of clients) c.socket.end();
    expect(await noneLeft()).toBe(true);
  });

  it("plain routes accept the upgrade and close the WebSocket at once", async () => {
    for (const p of ["/health/live", "/docs", "/problems"]) {
      const c = rawUpgrade(t.baseUrl, p);
      const head = await c.head;
      expect(head.status).toBe(101);
      // A WebSocket close frame (FIN + opcode 8, no payload) follows the head.
      expect([...(await c.firstBytes(2))]).toEqual([0x88, 0x00]);
      c.socket.end();
    }
    expect(await noneLeft()).toBe(true);
  });

  it("an HTTP refusal (401 on a route or on the openpi upgrade, 404) is followed by the server closing the socket", async () => {
    for (const p of ["/v1/models", "/v1/openpi", "/no/such/path"]) {
      const c = rawUpgrade(t.baseUrl, p);
      expect((await c.head).status).toBeGreaterThanOrEqual(400);
      await c.serverClosed;
      c.socket.destroy();
    }
    expect(await noneLeft()).toBe(true);
  });

  it("an unknown path still answers 404 route_not_found as problem+json", async () => {
    const c = rawUpgrade(t.baseUrl, "/no/such/path");
    const head = await c.head;
    expect(head.status).toBe(404);
    expect(head.headers).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(await head.body).code).toBe("route_not_found");
  });
});
