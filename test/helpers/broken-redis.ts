import type { Redis } from "ioredis";
import type { RedisHandle } from "../../src/platform/redis.ts";

/**
 * A RedisHandle whose client looks connected (or not) but whose every command fails: the
 * fallback paths of the Redis-backed stores, testable without a Redis. `calls` counts the
 * commands that reached the client.
 */
export function brokenRedis(status: "ready" | "reconnecting" = "ready"): RedisHandle & { calls: number } {
  const handle = { calls: 0 } as { calls: number };
  const fail = () => {
    handle.calls++;
    return Promise.reject(new Error("Connection is closed."));
  };
  const client = { status, evalsha: fail, eval: fail, del: fail, get: fail, set: fail } as unknown as Redis;
  return Object.assign(handle, {
    client,
    keyPrefix: "broken:",
    description: "broken test redis",
    status: () => (status === "ready" ? ("ok" as const) : ("down" as const)),
    ping: () => Promise.reject(new Error("down")),
    duplicate: () => null,
    close: () => Promise.resolve(),
  });
}

/** Waits until the handle's client is connected (a no-op without Redis). */
export async function redisReady(redis: RedisHandle): Promise<void> {
  for (let i = 0; i < 150 && redis.client !== null && redis.client.status !== "ready"; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
}
