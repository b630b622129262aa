import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "./helpers/app.ts";

const secret = (label: string) => `${label}${randomBytes(16).toString("hex")}`;

// Routes that quote their own URL in an error and in a log message, as a careless handler would.
const probes: FastifyPluginAsyncTypebox = async (app) => {
  app.get("/_probe/fails", async (request) => {
    throw new Error(`upstream refused ${request.url}`);
  });
  app.get("/_probe/logs", async (request) => {
    request.log.warn(`slow call to ${request.url}`);
    return { ok: true };
  });
};

describe("secrets in request URLs never reach the log", () => {
  let t: TestContext;
  const lines: string[] = [];
  const log = () => lines.join("");

  beforeAll(async () => {
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    t = await buildTestApp({ env: { LOG_LEVEL: "info" }, logStream, plugins: [probes] });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("redacts the token of the emailed /reset-password and /verify-email links", async () => {
    const reset = secret("reset");
    const verify = secret("verify");
    const a = await t.app.inject({ method: "GET", url: `/reset-password?token=${reset}` });
    const b = await t.app.inject({ method: "GET", url: `/verify-email?lang=en&token=${verify}` });
    expect(a.statusCode).toBe(200);
    expect(b.statusCode).toBe(200);
    expect(log()).not.toContain(reset);
    expect(log()).not.toContain(verify);
    // The line is still there and says which parameter was hidden.
    expect(log()).toContain('"url":"/reset-password?token=[redacted]"');
    expect(log()).toContain('"url":"/verify-email?lang=en&token=[redacted]"');
  });

  it("redacts every secret-bearing parameter, also on 404s, and keeps the others readable", async () => {
    const values = {
      api_key: secret("ak"),
      key: secret("k"),
      access_token: secret("at"),
      refresh_token: secret("rt"),
      code: secret("c"),
      client_secret: secret("cs"),
      password: secret("pw"),
      signature: secret("sig"),
      "X-Amz-Signature": secret("amz"),
      apiKey: secret("camel"),
      "%74oken": secret("encoded"),
    };
    const query = Object.entries(values)
      .map(([k, v]) => `${k}=${v}`)
      .join("&");
    const res = await t.app.inject({ method: "GET", url: `/no/such/route?${query}&unnorm_key=bridge_orig&limit=5` });
    expect(res.statusCode).toBe(404);
    for (const v of Object.values(values)) {
      expect(log()).not.toContain(v);
      expect(res.body).not.toContain(v);
    }
    expect(log()).toContain("unnorm_key=bridge_orig&limit=5");
  });

  it("redacts URLs quoted in error reports and in log messages", async () => {
    const inError = secret("err");
    const inMessage = secret("msg");
    const failed = await t.app.inject({ method: "GET", url: `/_probe/fails?token=${inError}` });
    expect(failed.statusCode).toBe(500);
    expect(failed.body).not.toContain(inError);
    const logged = await t.app.inject({ method: "GET", url: `/_probe/logs?api_key=${inMessage}` });
    expect(logged.statusCode).toBe(200);
    expect(log()).toContain("upstream refused /_probe/fails?token=[redacted]");
    expect(log()).toContain("slow call to /_probe/logs?api_key=[redacted]");
    expect(log()).not.toContain(inError);
    expect(log()).not.toContain(inMessage);
  });
});
