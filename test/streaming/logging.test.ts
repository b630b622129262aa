import { Writable } from "node:stream";
import { expect, it } from "vitest";
import { buildTestApp } from "../helpers/app.ts";
import { seedCustomer, seedKey } from "../helpers/limits.ts";
import { Client, jpeg } from "./helpers.ts";

it("stream and openpi sessions log their start and end, never the API key", async () => {
  const lines: string[] = [];
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const t = await buildTestApp({ env: { LOG_LEVEL: "debug", MODELS_WARM_UP: "false" }, logStream });
  try {
    const customerId = await seedCustomer(t.database, { tier: "enterprise" });
    const { key } = await seedKey(t.database, customerId);
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    const addr = t.app.server.address();
    if (addr === null || typeof addr === "string") throw new Error("no address");
    const base = `ws://127.0.0.1:${addr.port}`;
    const img = (await jpeg(64, 64, 1)).toString("base64");

    const browser = new Client(`${base}/v1/stream`);
    await browser.opened();
    browser.json({ type: "auth", api_key: key });
    browser.json({ type: "start", robot_id: "arm-1", unnorm_key: "bridge_orig", instruction: "go" });
    browser.json({ type: "frame", seq: 1, image: img });
    await browser.type("action");
    browser.json({ type: "stop" });
    await browser.closed;

    const wrong = `vla_live_${"4".repeat(44)}`;
    const bad = new Client(`${base}/v1/stream`, { authorization: `Bearer ${wrong}` });
    await bad.closed;
    const pi = new Client(`${base}/v1/openpi?unnorm_key=bridge_orig`, { authorization: `Api-Key ${key}` });
    await pi.next(() => true);
    pi.close();
    await pi.closed;
  } finally {
    await t.close();
  }
  const all = lines.join("");
  expect(all).toContain("stream session started");
  expect(all).toContain("stream session ended");
  expect(all).toContain("openpi session started");
  expect(all).not.toMatch(/vla_live_[1-9A-HJ-NP-Za-km-z]{20,}/);
});
