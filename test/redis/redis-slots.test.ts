import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { RedisKeyFailureThrottle } from "../../src/modules/api-keys/key-throttle.ts";
import { AccessTokenDenyList } from "../../src/modules/auth/deny-list.ts";
import { IP_POLICY, RedisFailureThrottle } from "../../src/modules/auth/throttle.ts";
import { calendar } from "../../src/modules/rate-limit/calendar.ts";
import { limitKeys, RedisLimiter } from "../../src/modules/rate-limit/redis-limiter.ts";
import { StreamTimeMeter } from "../../src/modules/rate-limit/stream-time.ts";
import type { UsageRecorder } from "../../src/modules/rate-limit/usage-recorder.ts";
import { RedisEstopRegistry } from "../../src/modules/safety/estop.ts";
import { RedisRobotStateStore } from "../../src/modules/safety/robot-state-store.ts";
import { ConnectionRegistry } from "../../src/modules/streaming/connections.ts";
import type { Db } from "../../src/platform/db/client.ts";
import { InvalidationBus } from "../../src/platform/invalidation.ts";
import { keySlot, pipelineGroup, type RedisClient, type RedisHandle } from "../../src/platform/redis.ts";
import { RedisWindowHits } from "../../src/platform/shared-throttle.ts";

/**
 * Issue 22: a key layout that crosses Redis Cluster slots is a failing test, not a production
 * surprise. A recording stand-in for ioredis' Cluster (three masters, the slot ranges
 * `redis-cli --cluster create` assigns) runs every Redis user of the app through its public API
 * and checks each call as Redis Cluster and ioredis would: all keys of one command, script or
 * MULTI in one slot; all keys of one pipeline on one node; no SCAN on the cluster client (it sees
 * one random node's keys only).
 */

const RANGES: [number, number, string][] = [
  [0, 5460, "127.0.0.1:7101"],
  [5461, 10922, "127.0.0.1:7102"],
  [10923, 16383, "127.0.0.1:7103"],
];
const nodeOfSlot = (slot: number) =>
  (RANGES.find(([lo, hi]) => slot >= lo && slot <= hi) as [number, number, string])[2];

/** Commands whose every argument is a key. */
const ALL_KEYS = new Set(["mget", "del", "exists", "unlink", "touch", "watch"]);
/** Commands without keys. */
const NO_KEYS = new Set(["ping", "publish", "subscribe", "unsubscribe", "script", "quit", "info"]);

function keysOf(name: string, args: unknown[]): string[] {
  if (name === "eval" || name === "evalsha") return args.slice(2, 2 + Number(args[1])).map(String);
  if (ALL_KEYS.has(name)) return args.map(String);
  if (name === "mset") return args.filter((_, i) => i % 2 === 0).map(String);
  if (NO_KEYS.has(name) || name === "scan") return [];
  return [String(args[0])];
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
}

interface Call {
  readonly name: string;
  readonly keys: string[];
  readonly pipeline?: number;
}

class FakeCluster extends EventEmitter {
  readonly isCluster = true;
  status = "ready";
  readonly slots: string[][] = Array.from({ length: 16_384 }, (_, s) => [nodeOfSlot(s)]);
  readonly calls: Call[] = [];
  readonly violations: string[] = [];
  private readonly data = new Map<string, unknown>();
  private pipelines = 0;

  /** Every command goes through here (the Proxy below routes unknown methods to it). */
  run(name: string, args: unknown[], pipeline?: number): unknown {
    const keys = keysOf(name, args);
    this.calls.push(pipeline === undefined ? { name, keys } : { name, keys, pipeline });
    const slots = new Set(keys.map(keySlot));
    if (slots.size > 1) this.violations.push(`${name} ${keys.join(" ")}: keys in ${slots.size} slots (CROSSSLOT)`);
    if (name === "scan") this.violations.push("SCAN on the cluster client: it sees one node's keys only");
    return this.apply(name, args, keys);
  }

  private apply(name: string, args: unknown[], keys: string[]): unknown {
    const d = this.data;
    const hash = (k: string) => {
      let h = d.get(k) as Map<string, string> | undefined;
      if (h === undefined) {
        h = new Map();
        d.set(k, h);
      }
      return h;
    };
    switch (name) {
      case "eval":
      case "evalsha": {
        for (const k of keys) d.set(k, "1");
        if (keys.length === 3) return ["0", "0", 0, ...Array.from({ length: Number(args[5]) }, () => 0)]; // limiter
        if (keys.length === 2) return [0, 0]; // stream time
        return 1; // stream session slot
      }
      case "set":
        d.set(keys[0] as string, args[1]);
        return "OK";
      case "get":
        return (d.get(keys[0] as string) as string | undefined) ?? null;
      case "exists":
      case "del":
        return keys.filter((k) => (name === "del" ? d.delete(k) : d.has(k))).length;
      case "hsetnx": {
        const h = hash(keys[0] as string);
        if (h.has(String(args[1]))) return 0;
        h.set(String(args[1]), String(args[2]));
        return 1;
      }
      case "hget":
        return hash(keys[0] as string).get(String(args[1])) ?? null;
      case "hgetall":
        return Object.fromEntries(hash(keys[0] as string));
      case "hdel":
        return hash(keys[0] as string).delete(String(args[1])) ? 1 : 0;
      case "publish":
        return 0;
      case "ping":
        return "PONG";
      default:
        return 0;
    }
  }

  /** The masters, as `scanTargets` gets them: each SCANs the keys of its own slots. */
  nodes(): unknown[] {
    return RANGES.map(([, , node]) => ({
      scan: async (_cursor: string, _match: string, pattern: string) => {
        const re = globToRegExp(pattern);
        return ["0", [...this.data.keys()].filter((k) => re.test(k) && nodeOfSlot(keySlot(k)) === node)];
      },
      del: async (k: string) => this.run("del", [k]),
    }));
  }

  pipeline(): unknown {
    const id = ++this.pipelines;
    const queued: [string, unknown[]][] = [];
    const p: Record<string, unknown> = {
      exec: async () => {
        const nodes = new Set(queued.flatMap(([name, args]) => keysOf(name, args).map((k) => nodeOfSlot(keySlot(k)))));
        if (nodes.size > 1) {
          this.violations.push(`pipeline ${queued.map(([n]) => n).join(",")}: keys on ${nodes.size} nodes`);
        }
        return queued.map(([name, args]) => [null, this.run(name, args, id)]);
      },
    };
    const proxy: unknown = new Proxy(p, {
      get: (t, prop: string) =>
        prop in t
          ? t[prop]
          : (...args: unknown[]) => {
              queued.push([prop, args]);
              return proxy;
            },
    });
    return proxy;
  }

  client(): RedisClient {
    return new Proxy(this, {
      get: (t, prop: string | symbol) => {
        if (typeof prop === "symbol" || prop in t) {
          const v = (t as unknown as Record<string | symbol, unknown>)[prop];
          return typeof v === "function" ? v.bind(t) : v;
        }
        return async (...args: unknown[]) => t.run(prop, args);
      },
    }) as unknown as RedisClient;
  }
}

function handle(fake: FakeCluster, keyPrefix: string): RedisHandle {
  const client = fake.client();
  return {
    client,
    keyPrefix,
    description: "fake cluster",
    status: () => "ok",
    ping: async () => {},
    duplicate: () => client,
    close: async () => {},
  };
}

/** Customer ids spread over all three nodes (UUID-like, as the app's are). */
const CUSTOMERS = Array.from({ length: 24 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
/** Prefixes an operator might set, including ones with braces of their own. */
const PREFIXES = ["vla:", "t:9f3a:", "app{blue}:", "a{b:", "a}b:"];

describe("Redis Cluster: every call of the app keeps its keys in one slot", () => {
  it("the customers used below land on all three nodes", () => {
    const nodes = new Set(CUSTOMERS.map((c) => nodeOfSlot(keySlot(`{${c}}`))));
    expect(nodes.size).toBe(3);
  });

  for (const prefix of PREFIXES) {
    describe(`REDIS_KEY_PREFIX=${prefix}`, () => {
      it("limiter: one script call per customer in one slot, one pipeline per node", async () => {
        const fake = new FakeCluster();
        const limiter = new RedisLimiter(fake.client(), prefix);
        const now = Date.UTC(2026, 11, 6, 5, 0, 0);
        const req = (customerId: string) => ({
          customerId,
          limits: { perMinute: 600, perDay: 10_000, perMonth: 100_000 },
          now,
          cal: calendar(now),
          cost: 1,
        });
        // Several customers in one event-loop turn: the batched (pipelined) path.
        await Promise.all(CUSTOMERS.flatMap((c) => [limiter.check(req(c)), limiter.check(req(c))]));
        // One alone: the single EVALSHA path.
        await limiter.check(req(CUSTOMERS[0] as string));
        expect(fake.violations).toEqual([]);
        const scripts = fake.calls.filter((c) => c.name === "evalsha");
        expect(scripts.length).toBe(CUSTOMERS.length + 1);
        for (const s of scripts) expect(s.keys).toHaveLength(3);
        // One pipeline per node the customers' keys live on (all on one when the prefix has a tag).
        const nodes = new Set(CUSTOMERS.map((c) => nodeOfSlot(keySlot(limitKeys(prefix, c, "d", "m")[0]))));
        expect(nodes.size).toBe(prefix.includes("{blue}") ? 1 : 3);
        expect(new Set(fake.calls.map((c) => c.pipeline).filter((p) => p !== undefined)).size).toBe(nodes.size);
      });

      it("limiter key builder: the three windows of a customer share a slot", () => {
        for (const c of CUSTOMERS) {
          const keys = limitKeys(prefix, c, "2026-12-06", "2026-12");
          expect(new Set(keys.map(keySlot)).size).toBe(1);
        }
      });

      it("stream time: the charge script's day and month keys share a slot", async () => {
        const fake = new FakeCluster();
        const usage = { durableStreamMs: async () => 0, recordStream: () => {} } as unknown as UsageRecorder;
        const meter = new StreamTimeMeter({
          redis: fake.client(),
          keyPrefix: prefix,
          usage,
          now: () => Date.UTC(2026, 11, 6, 5, 0, 0),
          redisTimeoutMs: 1_000,
          redisRetryMs: 1_000,
          cacheFreshMs: 60_000,
          cacheStaleMs: 60_000,
          load: async () => ({
            tier: "pro",
            streamSecondsPerDay: null,
            streamSecondsPerMonth: null,
            streamMaxFps: null,
            overageEnabled: false,
            overageCapStreamSeconds: null,
          }),
        });
        for (const c of CUSTOMERS) {
          expect((await meter.charge(c, 1_000)).source).toBe("redis");
          await meter.peek(c);
        }
        expect(fake.violations).toEqual([]);
        const scripts = fake.calls.filter((c) => c.name === "eval");
        expect(scripts.length).toBe(2 * CUSTOMERS.length);
        for (const s of scripts) expect(s.keys).toHaveLength(2);
      });

      it("stream session slots: acquire, heartbeat refresh (pipelined per node), release", async () => {
        const fake = new FakeCluster();
        const registry = new ConnectionRegistry({ free: 5, pro: 5, team: 5, enterprise: 5 } as never, {
          redis: handle(fake, prefix),
          heartbeatMs: 1_000,
        });
        const held: [string, string][] = [];
        for (const c of CUSTOMERS) {
          const slot = await registry.acquire(c, "pro" as never);
          expect(slot).toBeDefined();
          held.push([c, slot as string]);
        }
        registry.refreshSlots();
        await new Promise((r) => setImmediate(r));
        for (const [c, slot] of held) registry.release(c, slot);
        expect(fake.violations).toEqual([]);
        expect(fake.calls.filter((c) => c.name === "zadd").length).toBe(CUSTOMERS.length);
        expect(fake.calls.filter((c) => c.name === "zrem").length).toBe(CUSTOMERS.length);
      });

      it("emergency stops: per-customer hashes, listed by scanning every master", async () => {
        const fake = new FakeCluster();
        const estops = new RedisEstopRegistry(handle(fake, prefix));
        for (const c of CUSTOMERS) await estops.stop(c, "arm-1", { at: "2026-12-06T05:00:00Z", reason: "test" });
        await estops.check(CUSTOMERS[0] as string, "arm-1");
        await estops.list(CUSTOMERS[1] as string);
        const all = await estops.listAll(1_000);
        expect(all.map((s) => s.customerId).sort()).toEqual([...CUSTOMERS].sort());
        expect(await estops.clear(CUSTOMERS[2] as string, "arm-1")).toBe(true);
        expect(fake.violations).toEqual([]);
      });

      it("security throttles: sign-in, invalid API keys (two keys per IP), window counters", async () => {
        const fake = new FakeCluster();
        const h = handle(fake, prefix);
        const secret = "x".repeat(32);
        const login = new RedisFailureThrottle(h, { name: "login-ip", policy: IP_POLICY, secret });
        const keys = new RedisKeyFailureThrottle(h, 5, { secret });
        const hits = new RedisWindowHits(h, { name: "email-ip", windowMs: 60_000, secret });
        for (const c of CUSTOMERS) {
          await login.begin(c);
          await login.refund(c);
          await login.clear(c);
          await keys.check(c, `vla_${c}`);
          await keys.fail(c);
          await hits.hit(c);
        }
        keys.close();
        hits.close();
        expect(fake.violations).toEqual([]);
        const scripts = fake.calls.filter((c) => c.name === "evalsha");
        expect(scripts.some((c) => c.keys.length === 2)).toBe(true);
      });

      it("robot state, deny-list, invalidation: single keys or none", async () => {
        const fake = new FakeCluster();
        const h = handle(fake, prefix);
        const state = new RedisRobotStateStore(h, { now: () => 1_000 });
        for (const c of CUSTOMERS) {
          await state.set(c, "arm-1", [0, 0.1], 10);
          await state.get(c, "arm-1", 10);
          await state.delete(c, "arm-1");
        }
        const deny = new AccessTokenDenyList({} as Db, h);
        await deny.add("jti-1", Math.floor(Date.now() / 1000) + 60);
        expect(await deny.has("jti-1")).toBe(true);
        const bus = new InvalidationBus(h);
        await bus.publish("customer", CUSTOMERS[0] as string);
        expect(fake.violations).toEqual([]);
        expect(fake.calls.some((c) => c.name === "publish")).toBe(true);
      });
    });
  }

  it("the recorder itself flags a cross-slot script and a cross-node pipeline", async () => {
    const fake = new FakeCluster();
    const c = fake.client() as unknown as { eval(...a: unknown[]): Promise<unknown> };
    await c.eval("return 1", 2, "rl:a:gcra", "rl:b:gcra");
    const p = fake.client().pipeline();
    for (const id of CUSTOMERS) p.get(`{${id}}`);
    await p.exec();
    expect(fake.violations).toHaveLength(2);
    expect(pipelineGroup(fake.client(), "{x}")).toBe(nodeOfSlot(keySlot("x")));
  });
});
