import { randomUUID } from "node:crypto";
import type { RedisClient, RedisHandle } from "./redis.ts";

type Handler = (id: string) => void;

/**
 * Cache invalidation across instances. `publish` applies the change locally at once and
 * broadcasts it over Redis pub/sub, so a revoked key or a changed tier stops being served by
 * every instance within milliseconds instead of a cache TTL. Without Redis it is local only.
 * A subscriber that reconnects may have missed messages, so it tells `onReset` handlers to
 * drop everything.
 */
export class InvalidationBus {
  private readonly handlers = new Map<string, Handler[]>();
  private readonly resetHandlers: (() => void)[] = [];
  private readonly origin = randomUUID();
  private readonly channel: string;
  private readonly pub: RedisClient | null;
  private readonly sub: RedisClient | null;
  private connectedOnce = false;

  constructor(redis: RedisHandle) {
    this.channel = `${redis.keyPrefix}invalidate`;
    this.pub = redis.client;
    this.sub = redis.duplicate();
    const sub = this.sub;
    if (sub !== null) {
      sub.on("ready", () => {
        sub.subscribe(this.channel).catch(() => {});
        if (this.connectedOnce) this.reset();
        this.connectedOnce = true;
      });
      sub.on("message", (channel: string, message: string) => {
        if (channel === this.channel) this.receive(message);
      });
    }
  }

  on(topic: string, handler: Handler): void {
    const list = this.handlers.get(topic) ?? [];
    list.push(handler);
    this.handlers.set(topic, list);
  }

  onReset(handler: () => void): void {
    this.resetHandlers.push(handler);
  }

  /** Applies locally, then broadcasts (best effort: other instances' short cache TTL is the backstop). */
  async publish(topic: string, id: string): Promise<void> {
    this.apply(topic, id);
    await this.broadcast(topic, id);
  }

  /**
   * Tells the other instances only (this one's handlers are not called: the caller acted already).
   * True when the message went out; false without Redis or when the publish failed.
   */
  async broadcast(topic: string, id: string): Promise<boolean> {
    if (this.pub === null || this.pub.status !== "ready") return false;
    try {
      await this.pub.publish(this.channel, JSON.stringify({ o: this.origin, t: topic, id }));
      return true;
    } catch {
      // Redis trouble: the limiter's health already reports it; caches expire on their own.
      return false;
    }
  }

  /** True when changes reach other instances by broadcast. */
  get broadcasting(): boolean {
    return this.sub !== null && this.sub.status === "ready";
  }

  private receive(message: string): void {
    try {
      const m = JSON.parse(message) as { o?: unknown; t?: unknown; id?: unknown };
      if (m.o === this.origin || typeof m.t !== "string" || typeof m.id !== "string") return;
      this.apply(m.t, m.id);
    } catch {
      // Not ours; ignore.
    }
  }

  private apply(topic: string, id: string): void {
    for (const h of this.handlers.get(topic) ?? []) h(id);
  }

  private reset(): void {
    for (const h of this.resetHandlers) h();
  }
}
