import type { Writable } from "node:stream";
import type { FastifyServerOptions } from "fastify";
import { type LoggerOptions, stdSerializers } from "pino";
import type { Config } from "../config.ts";

/**
 * Paths pino removes from every log line. Request bodies are never logged; these cover
 * headers and any object a module logs by mistake.
 */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-api-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  "headers.authorization",
  'headers["x-api-key"]',
  "*.password",
  "*.new_password",
  "*.current_password",
  "*.token",
  "*.access_token",
  "*.refresh_token",
  "*.api_key",
  "*.key",
  "*.secret",
  "password",
  "token",
  "api_key",
];

export const REDACTED = "[redacted]";

/** A query parameter whose name contains one of these (letters and digits only, lowercased) is a secret. */
const SECRET_FRAGMENTS = [
  "token",
  "secret",
  "passw",
  "passphrase",
  "signature",
  "apikey",
  "accesskey",
  "privatekey",
  "credential",
  "jwt",
  "authorization",
  "sessionid",
  "cookie",
];
/** ... or has one of these as a whole word (`code` of OAuth, `sig` of signed URLs, `key`). */
const SECRET_WORDS = new Set(["key", "keys", "sig", "code", "auth", "pwd", "otp", "pin", "session", "hmac", "ticket"]);
/** Names ending in `key` that are not secrets, so they stay readable in logs. */
const PUBLIC_NAMES = new Set(["unnormkey"]);

/**
 * Whether a query parameter of this name carries a secret. Errs on the side of redacting:
 * any name ending in `key` counts unless it is one of this API's public parameters.
 */
export function isSecretParam(rawName: string): boolean {
  let name: string;
  try {
    name = decodeURIComponent(rawName.replace(/\+/g, " "));
  } catch {
    return true; // undecodable: cannot tell, so hide it
  }
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== "");
  const joined = words.join("");
  if (PUBLIC_NAMES.has(joined)) return false;
  if (words.some((w) => SECRET_WORDS.has(w))) return true;
  if (joined.endsWith("key")) return true;
  return SECRET_FRAGMENTS.some((f) => joined.includes(f));
}

/** One `name=value` of a query string: its separator, name and value. */
const PARAM = /([?&;])([^=&;#?\s]*)=([^&;#\s"'<>]*)/g;

/**
 * Replaces the value of every secret-bearing query parameter of `url` (or of any URL inside
 * a message) with `[redacted]`; the name stays so the log still says what was sent.
 */
export function redactUrl(text: string): string {
  if (!text.includes("=")) return text;
  return text.replace(PARAM, (whole, sep: string, name: string, value: string) =>
    value !== "" && isSecretParam(name) ? `${sep}${name}=${REDACTED}` : whole,
  );
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  headers?: Record<string, unknown>;
  socket?: { remotePort?: number };
}

/**
 * Fastify's request serializer with the URL's secrets redacted: `GET /reset-password?token=`
 * must not put the token in the log.
 */
function serializeRequest(req: LoggedRequest) {
  const version = req.headers?.["accept-version"];
  return {
    method: req.method,
    url: typeof req.url === "string" ? redactUrl(req.url) : req.url,
    version: typeof version === "string" ? version : undefined,
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}

/** pino's error serializer; messages and stacks may quote a request URL (Fastify's own errors do). */
function serializeError(err: Error) {
  const out = stdSerializers.err(err);
  if (typeof out?.message === "string") out.message = redactUrl(out.message);
  if (typeof out?.stack === "string") out.stack = redactUrl(out.stack);
  return out;
}

export function createLoggerOptions(config: Config, stream?: Writable): FastifyServerOptions["logger"] {
  const base = {
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    base: { service: "vla-inference-api", version: config.version },
    serializers: { req: serializeRequest, err: serializeError },
    hooks: {
      // Messages are free text: a URL quoted in one ("Reply was already sent ... /x?token=")
      // is redacted too.
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) {
          const a = args[i];
          if (typeof a === "string") args[i] = redactUrl(a);
        }
        return method.apply(this, args);
      },
    } satisfies LoggerOptions["hooks"],
  };
  if (stream !== undefined) return { ...base, stream };
  if (config.log.pretty) {
    return {
      ...base,
      transport: {
        target: "pino-pretty",
        options: { translateTime: "HH:MM:ss.l", ignore: "pid,hostname,service,version" },
      },
    };
  }
  return base;
}
