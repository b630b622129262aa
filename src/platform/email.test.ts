import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { TestSmtp } from "../../test/helpers/smtp.ts";
import { type EmailMessage, type EmailTransport, Mailer, smtpTransport } from "./email.ts";
import { HealthRegistry } from "./health.ts";

const quiet = { info() {}, warn() {}, error() {} };

function message(i: number): EmailMessage {
  return { kind: "test", to: `r${i}@example.com`, subject: `hello ${i}`, text: `body ${i}`, html: `<p>body ${i}</p>` };
}

/** A transport that fails the first `failures` attempts. */
function flaky(failures: number): EmailTransport & { sent: string[]; attempts: number } {
  const t = {
    description: "flaky",
    sent: [] as string[],
    attempts: 0,
    async send(m: EmailMessage) {
      t.attempts += 1;
      if (t.attempts <= failures) throw new Error("temporary failure");
      t.sent.push(m.to);
    },
    close() {},
  };
  return t;
}

const open: { close(): void | Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
}

describe("Mailer", () => {
  it("delivers through real SMTP on loopback without blocking the caller", async () => {
    const smtp = await new TestSmtp().start();
    open.push(smtp);
    const mailer = new Mailer({ transport: smtpTransport(smtp.url), from: "VLA <no-reply@example.test>", log: quiet });
    open.push(mailer);
    mailer.enqueue(message(1));
    expect(smtp.messages).toHaveLength(0);
    const got = await smtp.waitFor((m) => m.to.includes("r1@example.com"));
    expect(got.from).toBe("no-reply@example.test");
    expect(got.subject).toBe("hello 1");
  });

  it("retries with backoff and recovers", async () => {
    const transport = flaky(2);
    const registry = new Registry();
    const mailer = new Mailer({ transport, from: "x@example.test", log: quiet, retryBaseMs: 5, registry });
    open.push(mailer);
    mailer.enqueue(message(1));
    expect(await mailer.drain(5_000)).toBe(0);
    expect(transport.sent).toEqual(["r1@example.com"]);
    expect(await metric(registry, "vla_email_retries_total")).toBe(2);
    expect(await metric(registry, "vla_email_sent_total")).toBe(1);
    expect(mailer.health().status).toBe("ok");
  });

  it("gives up after maxAttempts: logged, counted, health degraded until a later message goes through", async () => {
    const smtp = await new TestSmtp().start();
    open.push(smtp);
    smtp.fail = true;
    const registry = new Registry();
    const errors: string[] = [];
    const log = { ...quiet, error: (_o: object, msg: string) => errors.push(msg) };
    const mailer = new Mailer({
      transport: smtpTransport(smtp.url),
      from: "x@example.test",
      log,
      retryBaseMs: 5,
      maxAttempts: 3,
      registry,
    });
    open.push(mailer);
    const health = new HealthRegistry();
    health.register("email", async () => mailer.health());

    mailer.enqueue(message(1));
    await mailer.drain(10_000);
    expect(await metric(registry, "vla_email_failed_total")).toBe(1);
    expect(errors).toContain("email undeliverable; giving up");
    const down = await health.run();
    expect(down.status).toBe("degraded");
    expect(down.checks.email?.status).toBe("degraded");

    smtp.fail = false;
    mailer.enqueue(message(2));
    await mailer.drain(10_000);
    expect((await health.run()).status).toBe("ok");
  });

  it("drain skips retry delays so shutdown does not wait out a backoff", async () => {
    const transport = flaky(1);
    const mailer = new Mailer({ transport, from: "x@example.test", log: quiet, retryBaseMs: 60_000 });
    open.push(mailer);
    mailer.enqueue(message(1));
    mailer.enqueue(message(2));
    await new Promise((r) => setTimeout(r, 20));
    expect(await mailer.drain(5_000)).toBe(0);
    expect(transport.sent.sort()).toEqual(["r1@example.com", "r2@example.com"]);
  });

  it("drain gives up at its deadline and reports what is left", async () => {
    const never: EmailTransport = { description: "hang", send: () => new Promise(() => {}), close() {} };
    const mailer = new Mailer({ transport: never, from: "x@example.test", log: quiet });
    open.push(mailer);
    mailer.enqueue(message(1));
    mailer.enqueue(message(2));
    expect(await mailer.drain(50)).toBe(2);
  });

  it("bounds the queue", async () => {
    const never: EmailTransport = { description: "hang", send: () => new Promise(() => {}), close() {} };
    const registry = new Registry();
    const mailer = new Mailer({ transport: never, from: "x@example.test", log: quiet, maxQueue: 2, registry });
    open.push(mailer);
    for (let i = 0; i < 5; i++) mailer.enqueue(message(i));
    expect(await metric(registry, "vla_email_failed_total")).toBe(2);
  });
});
