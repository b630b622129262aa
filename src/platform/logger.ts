import type { Writable } from "node:stream";
import type { FastifyServerOptions } from "fastify";
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

export function createLoggerOptions(config: Config, stream?: Writable): FastifyServerOptions["logger"] {
  const base = {
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    base: { service: "vla-inference-api", version: config.version },
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
