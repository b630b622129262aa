import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { buildTestApp } from "../helpers/app.ts";
import { decodeQuotedPrintable } from "../helpers/smtp.ts";
import { buildAuthApp, PASSWORD, uniqueEmail } from "./helpers.ts";

describe("email delivery", () => {
  it("without SMTP, writes .eml files to the outbox and logs where; the link works", async () => {
    const lines: string[] = [];
    const logStream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const ctx = await buildTestApp({
      env: { LOG_LEVEL: "info", PUBLIC_BASE_URL: "http://dev.example.test:8000" },
      logStream,
    });
    try {
      const email = uniqueEmail("outbox");
      const res = await ctx.app.inject({
        method: "POST",
        url: "/auth/register",
        payload: { email, password: PASSWORD },
      });
      expect(res.statusCode).toBe(201);
      expect(await ctx.app.platform.email.drain(5_000)).toBe(0);
      const dir = ctx.config.email.outboxDir;
      const files = readdirSync(dir).filter((f) => f.endsWith(".eml"));
      expect(files).toHaveLength(1);
      const file = path.join(dir, files[0] as string);
      const raw = decodeQuotedPrintable(readFileSync(file, "utf8"));
      expect(raw).toContain(`To: ${email}`);
      const link = /http:\/\/dev\.example\.test:8000\/verify-email\?token=([A-Za-z0-9_-]+)/.exec(raw);
      expect(link).not.toBeNull();
      expect(lines.join("")).toContain(`email written to outbox: ${file}`);
      const confirm = await ctx.app.inject({
        method: "POST",
        url: "/auth/verify-email/confirm",
        payload: { token: link?.[1] },
      });
      expect(confirm.statusCode).toBe(204);
      const health = await ctx.app.inject({ method: "GET", url: "/health" });
      expect(health.json().checks.email.status).toBe("ok");
    } finally {
      await ctx.close();
    }
  });

  it("an unreachable SMTP server never fails the request, and the queue is counted", async () => {
    const ctx = await buildAuthApp({ env: { SMTP_URL: "smtp://127.0.0.1:9" } });
    try {
      const res = await ctx.app.inject({
        method: "POST",
        url: "/auth/register",
        payload: { email: uniqueEmail("nosmtp"), password: PASSWORD },
      });
      expect(res.statusCode).toBe(201);
      const metrics = await ctx.app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.body).toContain("vla_email_queue_depth");
    } finally {
      await ctx.close();
    }
  });

  it("shutdown drains queued mail before the app closes", async () => {
    const ctx = await buildAuthApp();
    const email = uniqueEmail("drain");
    const res = await ctx.app.inject({ method: "POST", url: "/auth/register", payload: { email, password: PASSWORD } });
    expect(res.statusCode).toBe(201);
    await ctx.app.close();
    expect(ctx.smtp.messages.some((m) => m.to.includes(email))).toBe(true);
    await ctx.close();
  });
});
