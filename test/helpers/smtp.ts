import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";

/** A message as received by the loopback SMTP server. */
export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  readonly raw: string;
  readonly subject: string;
  /** The raw message with quoted-printable soft breaks and escapes decoded. */
  readonly decoded: string;
}

/**
 * A real SMTP server on 127.0.0.1 (smtp-server), so tests exercise nodemailer end to end.
 * `fail` makes it reject every message with a 451 (transient) to test retries.
 */
export class TestSmtp {
  readonly messages: ReceivedMail[] = [];
  fail = false;
  private readonly server: SMTPServer;
  private waiters: { predicate: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void }[] = [];
  port = 0;

  constructor() {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          if (this.fail) {
            const err = new Error("mailbox temporarily unavailable") as Error & { responseCode: number };
            err.responseCode = 451;
            callback(err);
            return;
          }
          const raw = Buffer.concat(chunks).toString("utf8");
          const mail: ReceivedMail = {
            from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address,
            to: session.envelope.rcptTo.map((r) => r.address),
            raw,
            subject: /^Subject: (.*)$/m.exec(raw)?.[1]?.trim() ?? "",
            decoded: decodeQuotedPrintable(raw),
          };
          this.messages.push(mail);
          const still: typeof this.waiters = [];
          for (const w of this.waiters) {
            if (w.predicate(mail)) w.resolve(mail);
            else still.push(w);
          }
          this.waiters = still;
          callback();
        });
      },
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  /** Resolves with the first message (already received or future) that matches. */
  waitFor(predicate: (m: ReceivedMail) => boolean, timeoutMs = 10_000): Promise<ReceivedMail> {
    const found = this.messages.find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no matching email received in time")), timeoutMs);
      this.waiters.push({
        predicate,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  /** The latest message to `to` whose subject matches. */
  waitForMail(to: string, subject: RegExp): Promise<ReceivedMail> {
    return this.waitFor((m) => m.to.includes(to) && subject.test(m.subject) && !this.consumed.has(m), 10_000).then(
      (m) => {
        this.consumed.add(m);
        return m;
      },
    );
  }

  private readonly consumed = new Set<ReceivedMail>();

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function decodeQuotedPrintable(raw: string): string {
  return raw
    .replace(/=\r?\n/g, "")
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** The first link in the message that starts with `base` and carries `?token=`. */
export function linkIn(mail: ReceivedMail, base: string): URL {
  const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const match = new RegExp(`${escaped}/[A-Za-z0-9/_-]+\\?token=[A-Za-z0-9_%-]+`).exec(mail.decoded);
  if (match === null) throw new Error(`no link to ${base} in the email:\n${mail.decoded}`);
  return new URL(match[0]);
}
