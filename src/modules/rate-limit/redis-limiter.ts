import { createHash } from "node:crypto";
import { pipelineGroup, type RedisClient } from "../../platform/redis.ts";
import { type CounterState, decide } from "./decide.ts";
import type { Limiter, LimitRequest, LimitResult } from "./limiter.ts";
import type { WindowName } from "./policy.ts";

/**
 * Every window checked and consumed atomically in one round trip, for n calls of one customer
 * made in the same event-loop turn (n = 1 when alone), in order, exactly as n calls one after
 * the other would be decided. Mirrors decide.ts: read the three counters once, decide each call,
 * and write only what the allowed calls spent (a rejected call spends nothing): at most four
 * writes for the lot. Under load most calls of a busy customer arrive together, and this is what
 * Redis spends per call.
 *
 * What the calls share (limits, calendar, seed) is passed once; each call adds only its time and
 * cost. The reply is the counters as they were before the calls, plus each call's verdict: the
 * caller replays the same decisions from that state with decide.ts (the same double arithmetic
 * in the same order) for the remaining figures and the headers, and checks that its verdicts
 * match. The GCRA time is stored with 17 significant digits, which reads back as the same double,
 * so nothing is rounded between calls or between batches.
 *
 * KEYS: 1 GCRA TAT, 2 day counter, 3 month counter (one `{customerId}` hash tag: one slot).
 * ARGV: 1 n, 2 base time (ms), 3 per-minute, 4 per-day, 5 per-month (-1 = unlimited),
 *       6 ms from base to the next UTC day, 7 ms from base to the next UTC month,
 *       8 month seed (-1 = none), then n pairs: ms after base, cost (0 = peek).
 * Returns {TAT before (string), day before (string), month before, then n violated bitmasks
 *          (0 = allowed; 1 minute, 2 day, 4 month)}, or {-1} when the month counter is absent and
 *          no seed came with the calls (cold Redis): the callers seed it from the durable count
 *          and call again.
 */
export const LIMIT_SCRIPT = `
local n = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local per_minute = tonumber(ARGV[3])
local per_day = tonumber(ARGV[4])
local per_month = tonumber(ARGV[5])
local to_day = tonumber(ARGV[6])
local to_month = tonumber(ARGV[7])
local seed = tonumber(ARGV[8])
local eps = 0.000001
local window = 60000

local got = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
local month
local cold = false
if not got[3] then
  if seed < 0 then return {-1} end
  month = seed
  cold = true
else
  month = tonumber(got[3])
end
local tat_before = got[1] or '0'
local day_before = got[2] or '0'
local out = {tat_before, day_before, month}
local day = tonumber(day_before)
local stored_tat = tonumber(tat_before)
local interval = 0
if per_minute > 0 then interval = window / per_minute end
local spends = false
local spent = 0
local last_at = 0

for i = 1, n do
  local at = tonumber(ARGV[7 + 2 * i])
  local cost = tonumber(ARGV[8 + 2 * i])
  local now = base + at
  if cost > 0 then spends = true end
  local tat = stored_tat
  if tat < now then tat = now end

  local violated = 0
  local new_tat = tat
  if per_minute == 0 then
    violated = 1
  elseif per_minute > 0 then
    new_tat = tat + interval * cost
    if new_tat - now > window + eps then violated = 1 end
  end
  if per_day >= 0 and day + cost > per_day then violated = violated + 2 end
  if per_month >= 0 and month + cost > per_month then violated = violated + 4 end

  if violated == 0 and cost > 0 then
    stored_tat = new_tat
    day = day + cost
    month = month + cost
    spent = spent + cost
    last_at = at
  end
  out[3 + i] = violated
end

if cold and spends then redis.call('SET', KEYS[3], seed, 'PX', to_month + 86400000) end
if spent > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', stored_tat), 'PX', math.ceil(stored_tat - base - last_at) + 1000)
  if redis.call('INCRBY', KEYS[2], spent) == spent then redis.call('PEXPIRE', KEYS[2], to_day - last_at + 3600000) end
  redis.call('INCRBY', KEYS[3], spent)
end
return out
`;

const SCRIPT_SHA = createHash("sha1").update(LIMIT_SCRIPT).digest("hex");

const BIT: Record<WindowName, number> = { minute: 1, day: 2, month: 4 };

/** Redis Cluster routes by the `{...}` hash tag: every key of one customer lands in one slot. */
export function limitKeys(prefix: string, customerId: string, day: string, month: string): [string, string, string] {
  const base = `${prefix}rl:{${customerId}}:`;
  return [`${base}gcra`, `${base}d:${day}`, `${base}m:${month}`];
}

const unlimited = (n: number | null) => (n === null ? -1 : n);

interface PendingCheck {
  /** Calls with the same group id share keys, limits and calendar: one script call. */
  readonly group: string;
  readonly keys: [string, string, string];
  readonly req: LimitRequest;
  readonly resolve: (v: LimitResult | "needs-seed") => void;
  readonly reject: (e: unknown) => void;
}

export class RedisLimiter implements Limiter {
  private readonly client: RedisClient;
  private readonly prefix: string;
  /** Key names per customer for the current day, so the hot path builds no strings. */
  private readonly keyCache = new Map<string, { day: string; keys: [string, string, string] }>();
  private pending: PendingCheck[] = [];

  constructor(client: RedisClient, prefix: string) {
    this.client = client;
    this.prefix = prefix;
  }

  check(req: LimitRequest): Promise<LimitResult | "needs-seed"> {
    let cached = this.keyCache.get(req.customerId);
    if (cached === undefined || cached.day !== req.cal.day) {
      if (this.keyCache.size > 100_000) this.keyCache.clear();
      cached = { day: req.cal.day, keys: limitKeys(this.prefix, req.customerId, req.cal.day, req.cal.month) };
      this.keyCache.set(req.customerId, cached);
    }
    const { perMinute, perDay, perMonth } = req.limits;
    // The day key names the calendar (day and month); the limits are what else the calls share.
    const group = `${req.customerId} ${req.cal.day} ${perMinute} ${perDay} ${perMonth}`;
    return this.submit(group, cached.keys, req);
  }

  /**
   * Calls made in one event-loop turn go out together at its end (setImmediate). Calls of the
   * same customer (same keys and limits) become one LIMIT_SCRIPT call, decided in arrival order;
   * the customers' calls go out as one pipeline write (fewer syscalls for us and for Redis), or
   * as a single EVALSHA when there is only one. On a Redis Cluster a pipeline goes to one node,
   * so there is one pipeline per node (`pipelineGroup`); each script call's keys share the
   * customer's slot. Unlike ioredis' auto-pipelining, a batch never
   * waits for the previous one's replies, so a lone request is not held back by a round trip in
   * flight.
   */
  private submit(
    group: string,
    keys: [string, string, string],
    req: LimitRequest,
  ): Promise<LimitResult | "needs-seed"> {
    return new Promise((resolve, reject) => {
      this.pending.push({ group, keys, req, resolve, reject });
      if (this.pending.length === 1) setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    const batch = this.pending;
    this.pending = [];
    const first = batch[0] as PendingCheck;
    let single = true;
    for (const c of batch) if (c.group !== first.group) single = false;
    if (single) {
      this.runGroup(batch).then(
        (reply) => this.settle(batch, reply),
        (e: unknown) => {
          for (const c of batch) c.reject(e);
        },
      );
      return;
    }
    const groups = new Map<string, PendingCheck[]>();
    for (const c of batch) {
      const g = groups.get(c.group);
      if (g === undefined) groups.set(c.group, [c]);
      else g.push(c);
    }
    // One pipeline per node: a cluster pipeline goes to a single node (one on a single Redis).
    const byNode = new Map<string, PendingCheck[][]>();
    for (const g of groups.values()) {
      const node = pipelineGroup(this.client, (g[0] as PendingCheck).keys[0]);
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [g]);
      else list.push(g);
    }
    for (const list of byNode.values()) this.sendPipeline(list);
  };

  private sendPipeline(list: PendingCheck[][]): void {
    if (list.length === 1) {
      const g = list[0] as PendingCheck[];
      this.runGroup(g).then(
        (reply) => this.settle(g, reply),
        (e: unknown) => {
          for (const c of g) c.reject(e);
        },
      );
      return;
    }
    const pipeline = this.client.pipeline();
    for (const g of list) pipeline.evalsha(SCRIPT_SHA, 3, ...(g[0] as PendingCheck).keys, ...argsOf(g));
    pipeline.exec().then(
      (results) => {
        list.forEach((g, i) => {
          const [err, value] = results?.[i] ?? [new Error("no reply in the pipeline"), undefined];
          if (err === null) this.settle(g, value);
          else if (err.message.startsWith("NOSCRIPT")) {
            this.runGroup(g).then(
              (reply) => this.settle(g, reply),
              (e: unknown) => {
                for (const c of g) c.reject(e);
              },
            );
          } else for (const c of g) c.reject(err);
        });
      },
      (e: unknown) => {
        for (const g of list) for (const c of g) c.reject(e);
      },
    );
  }

  /**
   * Replays the group's calls from the counters the script read, with decide.ts: the script's
   * verdicts decide, the replay supplies the rest (retry, remaining, reset, counts) and must
   * agree with every verdict, or the whole group fails (and the service falls back).
   */
  private settle(group: PendingCheck[], reply: unknown): void {
    try {
      const results = replay(group, reply);
      group.forEach((c, i) => {
        c.resolve(results[i] as LimitResult | "needs-seed");
      });
    } catch (e) {
      for (const c of group) c.reject(e);
    }
  }

  /**
   * One group on its own: EVALSHA first; a Redis that lost its script cache (restart, SCRIPT
   * FLUSH) gets EVAL once.
   */
  private async runGroup(group: PendingCheck[]): Promise<unknown> {
    const keys = (group[0] as PendingCheck).keys;
    const args = argsOf(group);
    try {
      return await this.client.evalsha(SCRIPT_SHA, 3, ...keys, ...args);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("NOSCRIPT")) {
        return await this.client.eval(LIMIT_SCRIPT, 3, ...keys, ...args);
      }
      throw e;
    }
  }
}

/**
 * LIMIT_SCRIPT's arguments for a group of calls: what they share, taken from the first (the
 * seed from the first call that brought one), then each call's time after the first's and cost.
 */
function argsOf(group: PendingCheck[]): number[] {
  const { req } = group[0] as PendingCheck;
  const base = req.now;
  let seed = -1;
  for (const c of group) {
    if (c.req.monthSeed !== undefined) {
      seed = c.req.monthSeed;
      break;
    }
  }
  const args = [
    group.length,
    base,
    unlimited(req.limits.perMinute),
    unlimited(req.limits.perDay),
    unlimited(req.limits.perMonth),
    req.cal.nextDayAt - base,
    req.cal.nextMonthAt - base,
    seed,
  ];
  for (const c of group) args.push(c.req.now - base, c.req.cost);
  return args;
}

/** The results of a group's calls from LIMIT_SCRIPT's reply (see there). */
function replay(group: readonly PendingCheck[], reply: unknown): (LimitResult | "needs-seed")[] {
  const flat = reply as (string | number)[];
  if (flat.length === 1 && flat[0] === -1) return group.map(() => "needs-seed");
  if (flat.length !== 3 + group.length) {
    throw new Error(`the limit script answered ${flat.length} values for ${group.length} calls`);
  }
  let state: CounterState = { tat: Number(flat[0]), day: Number(flat[1]), month: Number(flat[2]) };
  return group.map(({ req }, i) => {
    const d = decide(
      state,
      req.limits,
      req.now,
      { msUntilNextDay: req.cal.nextDayAt - req.now, msUntilNextMonth: req.cal.nextMonthAt - req.now },
      req.cost,
    );
    let bits = 0;
    for (const w of d.violated) bits += BIT[w];
    if (bits !== flat[3 + i]) {
      throw new Error(`the limit script's verdict ${flat[3 + i]} differs from the replay's ${bits}`);
    }
    if (d.allowed && req.cost > 0) state = d.state;
    return {
      allowed: d.allowed,
      violated: d.violated,
      retryAfterMs: Math.ceil(d.retryAfterMs),
      minuteRemaining: d.minuteRemaining,
      minuteResetMs: Math.ceil(d.minuteResetMs),
      day: state.day,
      month: state.month,
    };
  });
}
