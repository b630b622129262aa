import { Redis } from "ioredis";

export type RedisStatus = "disabled" | "ok" | "down";

/**
 * The optional Redis connection. Absent (embedded mode) or failing Redis is reported through
 * `status()` and health, never fatal: every caller has an in-process fallback.
 */
export interface RedisHandle {
  /** The live client, or null when Redis is not configured. Commands fail fast while disconnected. */
  readonly client: Redis | null;
  /** Prefix for every key this service writes, so several deployments can share one Redis. */
  readonly keyPrefix: string;
  readonly description: string;
  status(): RedisStatus;
  ping(timeoutMs?: number): Promise<void>;
  /** A second connection for SUBSCRIBE (a subscribed connection cannot run other commands). */
  duplicate(): Redis | null;
  close(): Promise<void>;
}

export interface RedisOptions {
  readonly url?: string | undefined;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
}

function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.hostname}${u.port ? `:${u.port}` : ""}${u.pathname === "/" ? "" : u.pathname}`;
}

export function createRedis(options: RedisOptions): RedisHandle {
  if (options.url === undefined) {
    return {
      client: null,
      keyPrefix: options.keyPrefix,
      description: "none (in-process fallbacks)",
      status: () => "disabled",
      ping: () => Promise.reject(new Error("redis is not configured")),
      duplicate: () => null,
      close: () => Promise.resolve(),
    };
  }
  const url = options.url;
  const make = (): Redis => {
    const r = new Redis(url, {
      lazyConnect: false,
      // Fail fast instead of queueing while disconnected: callers fall back in-process.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // No auto-pipelining: ioredis keeps one auto-pipeline in flight per connection, so a
      // command issued while another awaits its reply is held back a whole round trip (the
      // limiter's EVALSHA at 1,000 req/s: p99 0.8 ms pipelined vs 0.4 ms direct). Commands
      // written directly still pipeline on the socket; Redis answers them in order.
      enableAutoPipelining: false,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: 2_000,
      // Reconnect forever with a capped backoff; recovery needs no restart.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5_000),
    });
    // Without a listener ioredis would print unhandled error events; status() reports them.
    r.on("error", () => {});
    return r;
  };
  const client = make();
  const extra: Redis[] = [];
  return {
    client,
    keyPrefix: options.keyPrefix,
    description: redactUrl(url),
    status: () => (client.status === "ready" ? "ok" : "down"),
    async ping(timeoutMs = 1_000) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.ping(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`redis ping timed out after ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
    },
    duplicate() {
      const d = make();
      extra.push(d);
      return d;
    },
    async close() {
      for (const r of [client, ...extra]) {
        try {
          await r.quit();
        } catch {
          r.disconnect();
        }
      }
    },
  };
}
