import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import nodemailer, { type Transporter } from "nodemailer";
import { Counter, Gauge, type Registry } from "prom-client";
import type { CheckResult } from "./health.ts";

/** A rendered message; templates live with the feature that sends them. */
export interface EmailMessage {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  /** A short label for logs and metrics ("verify_email", "password_reset", ...). */
  readonly kind: string;
}

/** Delivers one message or throws; the queue above it retries. */
export interface EmailTransport {
  readonly description: string;
  send(message: EmailMessage, from: string): Promise<void>;
  close(): void;
}

interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** SMTP through nodemailer; `smtps://` is TLS from the first byte, `smtp://` upgrades with STARTTLS when offered. */
export function smtpTransport(url: string): EmailTransport {
  const u = new URL(url);
  const transporter: Transporter = nodemailer.createTransport({
    url,
    // Certificates are verified (nodemailer's default); TLS below 1.2 is refused.
    tls: { minVersion: "TLSv1.2" },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  } as Parameters<typeof nodemailer.createTransport>[0]);
  return {
    description: `smtp ${u.hostname}:${u.port || (u.protocol === "smtps:" ? "465" : "587")}`,
    async send(message, from) {
      await transporter.sendMail({
        from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
      });
    },
    close: () => transporter.close(),
  };
}

/**
 * Development default: every message becomes an `.eml` file in `dir` (open it with any mail
 * client, or read the link in the text part) and one log line says where it went.
 */
export function outboxTransport(dir: string, log: Logger): EmailTransport {
  const builder = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    description: `outbox ${dir}`,
    async send(message, from) {
      const info = await builder.sendMail({
        from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
      });
      await mkdir(dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const file = path.join(dir, `${stamp}-${message.kind}-${randomUUID().slice(0, 8)}.eml`);
      await writeFile(file, info.message as Buffer, { mode: 0o600 });
      log.info({ email_kind: message.kind, file }, `email written to outbox: ${file}`);
    },
    close: () => {},
  };
}

export interface MailerOptions {
  readonly transport: EmailTransport;
  readonly from: string;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Attempts per message before it is dropped and counted as failed (default 5). */
  readonly maxAttempts?: number;
  /** First retry delay; doubles each attempt, capped at 60 s (default 1 s). */
  readonly retryBaseMs?: number;
  /** Messages waiting beyond this are refused (counted, logged): a mail outage cannot eat the heap. */
  readonly maxQueue?: number;
}

interface Job {
  readonly message: EmailMessage;
  attempts: number;
  notBefore: number;
}

/**
 * The in-process email queue. `enqueue` returns at once and never throws: the HTTP request
 * that triggered a message does not wait for SMTP. One worker sends in order, retrying each
 * message with exponential backoff; after `maxAttempts` the message is logged and counted as
 * failed, and health reports `degraded` until a later message goes through.
 */
export class Mailer {
  private readonly transport: EmailTransport;
  private readonly from: string;
  private readonly log: Logger;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private readonly maxQueue: number;
  private readonly queue: Job[] = [];
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** Set by drain(): retries go out without waiting for their backoff. */
  private draining = false;
  private consecutiveFailures = 0;
  private lastError: string | undefined;
  private readonly sent: Counter<"kind">;
  private readonly failed: Counter<"kind">;
  private readonly retried: Counter<"kind">;

  constructor(options: MailerOptions) {
    this.transport = options.transport;
    this.from = options.from;
    this.log = options.log;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.retryBaseMs = options.retryBaseMs ?? 1_000;
    this.maxQueue = options.maxQueue ?? 10_000;
    const registers = options.registry === undefined ? [] : [options.registry];
    this.sent = new Counter({
      name: "vla_email_sent_total",
      help: "Emails delivered to the transport, by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.failed = new Counter({
      name: "vla_email_failed_total",
      help: "Emails given up after every retry (or refused by a full queue), by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.retried = new Counter({
      name: "vla_email_retries_total",
      help: "Failed send attempts that will be retried, by kind.",
      labelNames: ["kind"],
      registers,
    });
    const queue = this.queue;
    new Gauge({
      name: "vla_email_queue_depth",
      help: "Emails waiting to be sent.",
      registers,
      collect() {
        this.set(queue.length);
      },
    });
  }

  get description(): string {
    return this.transport.description;
  }

  get pending(): number {
    return this.queue.length + (this.running ? 1 : 0);
  }

  /** Queues a message; returns immediately. */
  enqueue(message: EmailMessage): void {
    if (this.closed) {
      this.failed.inc({ kind: message.kind });
      this.log.error({ email_kind: message.kind }, "email dropped: mailer is closed");
      return;
    }
    if (this.queue.length >= this.maxQueue) {
      this.failed.inc({ kind: message.kind });
      this.log.error({ email_kind: message.kind, queue: this.queue.length }, "email dropped: queue full");
      return;
    }
    this.queue.push({ message, attempts: 0, notBefore: 0 });
    this.kick();
  }

  /** Health: degraded while the last message(s) could not be delivered after every retry. */
  health(): CheckResult {
    if (this.consecutiveFailures > 0) {
      return {
        status: "degraded",
        detail: `${this.consecutiveFailures} email(s) undeliverable via ${this.transport.description}: ${this.lastError ?? "error"}`,
      };
    }
    return { status: "ok", detail: `${this.transport.description}; ${this.pending} queued` };
  }

  /**
   * Waits until the queue is empty, skipping retry delays, or until `deadlineMs` passes.
   * Used on shutdown; returns how many messages were left unsent.
   */
  async drain(deadlineMs: number): Promise<number> {
    const until = Date.now() + deadlineMs;
    this.draining = true;
    for (const j of this.queue) j.notBefore = 0;
    this.kick();
    if (this.pending > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, until - Date.now()));
        }),
      ]);
      clearTimeout(timer);
    }
    this.draining = false;
    const left = this.pending;
    if (left > 0) this.log.error({ unsent: left }, "shutdown: emails left unsent after the drain deadline");
    return left;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.transport.close();
  }

  private kick(): void {
    if (this.wake !== undefined) {
      const w = this.wake;
      this.wake = undefined;
      clearTimeout(this.timer);
      w();
      return;
    }
    if (!this.running) void this.work();
  }

  private async work(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const now = Date.now();
        const index = this.queue.findIndex((j) => j.notBefore <= now);
        if (index === -1) {
          const wait = Math.min(...this.queue.map((j) => j.notBefore)) - now;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            this.timer = setTimeout(() => {
              this.wake = undefined;
              resolve();
            }, wait);
          });
          continue;
        }
        const [job] = this.queue.splice(index, 1);
        if (job !== undefined) await this.attempt(job);
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async attempt(job: Job): Promise<void> {
    const kind = job.message.kind;
    job.attempts += 1;
    try {
      await this.transport.send(job.message, this.from);
      this.sent.inc({ kind });
      this.consecutiveFailures = 0;
      this.lastError = undefined;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      if (job.attempts < this.maxAttempts && !this.closed) {
        this.retried.inc({ kind });
        const delay = this.draining ? 0 : Math.min(this.retryBaseMs * 2 ** (job.attempts - 1), 60_000);
        job.notBefore = Date.now() + delay;
        this.log.warn({ email_kind: kind, attempt: job.attempts, retry_in_ms: delay, reason }, "email send failed");
        // Retry at the back of the queue so one bad message does not hold up the others.
        this.queue.push(job);
        return;
      }
      this.failed.inc({ kind });
      this.consecutiveFailures += 1;
      this.lastError = reason;
      this.log.error({ email_kind: kind, attempts: job.attempts, reason }, "email undeliverable; giving up");
    }
  }
}
