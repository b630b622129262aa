import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customerModelExample } from "../../src/modules/models/models.schemas.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";
import { jpeg } from "../inference/helpers.ts";

/**
 * A customer's endpoint URL may carry a token in its path (https://gpu.example.com/t/<token>), which
 * the URL rules cannot refuse. The server's logs name such an endpoint by position and origin only.
 * The only sockets opened go to the loopback fake server below (allow-listed in this file).
 */

const token = `tok${randomBytes(16).toString("hex")}`;
let fake: Server;
let base: string;
/** A loopback port where nothing listens (connection refused). */
let closedPort: number;
let t: LimitsContext;
let key: string;
let img: string;
const lines: string[] = [];
const log = () => lines.join("");

beforeAll(async () => {
  fake = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const url = req.url ?? "";
      if (url.includes("/fail/")) res.writeHead(500).end();
      else if (url.includes("/redirect/")) res.writeHead(302, { location: `${base}/elsewhere` }).end();
      else if (url.includes("/bad/")) res.writeHead(200, { "content-type": "application/json" }).end("not json");
      else if (url.includes("/huge/")) res.writeHead(200, { "content-length": String(4 * 1024 * 1024) }).end();
      // "/slow/": never answers (the model's timeout ends the call)
    });
  });
  await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));

  t = await buildLimitsApp({
    env: {
      LOG_LEVEL: "trace",
      MODELS_WARM_UP: "false",
      BYOM_ALLOW_HTTP: "true",
      BYOM_ALLOWED_NETWORKS: "127.0.0.0/8",
    },
    logStream: new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
    egressResolver: async () => [],
  });
  const customer = await seedCustomer(t.database, { tier: "enterprise", perMinute: 1_000_000 });
  key = (await seedKey(t.database, customer, { scopes: ["inference", "admin"] })).key;
  img = (await jpeg(64, 48, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
  fake.closeAllConnections();
  await new Promise<void>((r) => fake.close(() => r()));
});

const call = (model: string) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "pick", model, robot_id: "cell-1" },
  });

describe("a customer endpoint's URL path never reaches the server's logs", () => {
  it("failures of every kind are logged naming the endpoint by position and origin", async () => {
    const at = String.raw`endpoint [12] \(http://127\.0\.0\.1:\d+\)`;
    const cases: [string, string[], Record<string, unknown>, number, RegExp][] = [
      [
        "fails",
        [`${base}/t/${token}/fail`, `${base}/t/${token}/fail2/fail/`],
        { retries: 1 },
        503,
        new RegExp(`${at} answered HTTP 500`),
      ],
      ["redirects", [`${base}/t/${token}/redirect`], {}, 503, new RegExp(`${at} answered a redirect`)],
      ["garbage", [`${base}/t/${token}/bad`], {}, 502, new RegExp(`${at} answered with something that is not JSON`)],
      ["huge", [`${base}/t/${token}/huge`], {}, 502, /answer of 4194304 bytes exceeds the limit of 1048576/],
      ["slow", [`${base}/t/${token}/slow`], { timeout_ms: 300 }, 503, new RegExp(`${at} did not answer within 300 ms`)],
      [
        "kserve",
        [`${base}/t/${token}/fail`],
        { kind: "kserve-v2", model_name: "policy" },
        503,
        new RegExp(`${at} (answered HTTP 500|down \\(ready probes answered 500/500\\))`),
      ],
      ["refused", [`http://127.0.0.1:${closedPort}/t/${token}`], {}, 503, new RegExp(`${at}: connect ECONNREFUSED`)],
    ];
    for (const [id, endpoints, extra, status, reason] of cases) {
      const reg = await t.app.inject({
        method: "POST",
        url: "/v1/models",
        headers: { "x-api-key": key },
        payload: { ...customerModelExample, id, backend: { kind: "openvla-http", endpoints, retries: 0, ...extra } },
      });
      expect(reg.statusCode, reg.body).toBe(201);
      const res = await call(id);
      expect(res.statusCode, res.body).toBe(status);
      // The customer reads which of its endpoints failed and why...
      expect(res.json().detail).toMatch(reason);
      expect(res.body).not.toContain(token);
    }
    // ...and so do the server's logs (error lines with their causes), without the path's token.
    expect(log()).toMatch(new RegExp(`endpoint [12] \\(${base.replace(/\./g, "\\.")}\\) answered HTTP 500`));
    expect(log()).toContain(`endpoint 1 (http://127.0.0.1:${closedPort}): connect ECONNREFUSED`);
    expect(log()).not.toContain(token);
  });
});
