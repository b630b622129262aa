import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { streamRegistries } from "../../src/modules/streaming/streaming.module.ts";
import { customers, usageCounters } from "../../src/platform/db/schema/index.ts";
import { buildStreamApp, Client, jpeg, newKey, rawUpgrade, type StreamTestContext, started } from "./helpers.ts";

// Stream sessions are metered in robot time on the app's (fake) clock: the tests move it by
// minutes and charge the sessions by hand (what the heartbeat does every STREAM_HEARTBEAT_MS).
let t: StreamTestContext;
let img: string;
beforeAll(async () => {
  t = await buildStreamApp({ STREAM_HEARTBEAT_MS: "600000", STREAM_STATS_INTERVAL_MS: "600000" });
  img = (await jpeg(224, 224, 2)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const MIN = 60_000;
const charge = () => {
  const registry = streamRegistries.get(t.app.platform);
  if (registry === undefined) throw new Error("no registry");
  return registry.chargeTime();
};

describe("stream time (robot-seconds)", () => {
  it("a free session is charged its wall time, sees it in stats and /v1/usage, and is closed 4429 when the day's 30 min run out", async () => {
    const { key, customerId } = await newKey(t, { tier: "free" });
    const { c, s } = await started(t, {}, key);
    expect((s.limits as Record<string, unknown>).stream_time).toEqual({
      per_day_s: 1800,
      per_month_s: 18000,
      max_fps: 15,
    });
    // Frames do not spend the free tier's 10 requests/min.
    for (let seq = 1; seq <= 12; seq++) {
      c.json({ type: "frame", seq, image: img, must_go: true });
      await c.next((m) => m.seq === seq);
    }
    expect(c.of("action")).toHaveLength(12);

    t.clock.advance(10 * MIN);
    await charge();
    c.json({ type: "stats" });
    const stats = await c.type("stats");
    expect(stats.stream_time).toEqual({
      session_s: 600,
      day: { used_s: 600, limit_s: 1800, remaining_s: 1200 },
      month: { used_s: 600, limit_s: 18000, remaining_s: 17400 },
    });
    const usage = (await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": key } })).json();
    expect(usage.stream_day).toMatchObject({ used_s: 600, limit_s: 1800, remaining_s: 1200 });
    expect(usage.stream_month).toMatchObject({ used_s: 600, limit_s: 18000, remaining_s: 17400 });
    expect(usage.minute.used).toBe(0);

    t.clock.advance(20 * MIN);
    await charge();
    const error = await c.type("error");
    expect(error).toMatchObject({ code: "quota_exceeded" });
    expect(error.message).toMatch(/"stream_day"/);
    expect(await c.type("stopped")).toMatchObject({
      reason: "stream_time_exhausted",
      stream_time: { day: { used_s: 1800, remaining_s: 0 } },
    });
    const closed = await c.closed;
    expect(closed.code).toBe(4429);
    expect(closed.reason).toMatch(/^quota_exceeded: /);

    // A new session of the customer is refused: HTTP 429 with Retry-After on a header-authenticated upgrade…
    const up = rawUpgrade(t.baseUrl, "/v1/stream", { "x-api-key": key });
    const head = await up.head;
    expect(head.status).toBe(429);
    expect(head.headers).toMatch(/retry-after: \d+/i);
    expect(head.headers).toMatch(/ratelimit-policy: "stream_day";q=1800;w=86400/i);
    up.socket.destroy();
    // …and error + close 4429 when authenticated by message.
    const m = new Client(`${t.baseUrl}/v1/stream`);
    await m.opened();
    m.json({ type: "auth", api_key: key });
    expect(await m.type("error")).toMatchObject({ code: "quota_exceeded" });
    expect((await m.closed).code).toBe(4429);

    // The month's stream time is durable (usage_counters.stream_ms), beside the request counts.
    await t.app.platform.limits.flush();
    const [row] = await t.database.db.select().from(usageCounters).where(eq(usageCounters.customerId, customerId));
    expect(row?.streamMs).toBe(30 * MIN);

    // The next UTC day has time again.
    t.clock.advance(24 * 60 * MIN);
    const next = await started(t, {}, key);
    expect(next.s.type).toBe("started");
    next.c.close();
  });

  it("openpi: refused upgrade is 429 + Retry-After; a running session gets a text error and close 4429", async () => {
    const { key, customerId } = await newKey(t, { tier: "pro" });
    await t.database.db.update(customers).set({ streamSecondsPerMonth: 120 }).where(eq(customers.id, customerId));
    const c = new Client(`${t.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` });
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    c.ws.send(
      packMsgpackNumpy({
        "observation/image": { data: new Uint8Array(224 * 224 * 3), shape: [224, 224, 3] },
        prompt: "stack",
      }),
    );
    await c.next(() => c.raw.length >= 2);
    t.clock.advance(2 * MIN);
    await charge();
    const closed = await c.closed;
    expect(closed.code).toBe(4429);
    const text = c.raw.at(-1);
    expect(text?.isBinary).toBe(false);
    expect(text?.data.toString()).toMatch(/^quota_exceeded: .*"stream_month"/);

    const up = rawUpgrade(t.baseUrl, "/v1/openpi", { authorization: `Api-Key ${key}` });
    const head = await up.head;
    expect(head.status).toBe(429);
    expect(head.headers).toMatch(/retry-after: \d+/i);
    expect(await head.body).toMatch(/stream_month/);
    up.socket.destroy();
  });

  it("a burst above the free tier's 15 frames/s ceiling is dropped rate_ceiling without inference", async () => {
    const { key } = await newKey(t, { tier: "free" });
    const { c } = await started(t, {}, key);
    const small = (await jpeg(32, 32, 3)).toString("base64");
    for (let seq = 1; seq <= 60; seq++) c.json({ type: "frame", seq, image: small });
    const ceiling = await c.type("dropped", (m) => m.reason === "rate_ceiling");
    expect(ceiling.max_fps).toBe(15);
    c.json({ type: "stats" });
    const st = await c.type("stats");
    expect((st.stats as { frames_dropped: { rate_ceiling: number } }).frames_dropped.rate_ceiling).toBeGreaterThan(0);
    c.close();
  });

  it("openpi: observations faster than the ceiling are held, not refused", async () => {
    const { key, customerId } = await newKey(t, { tier: "pro" });
    await t.database.db.update(customers).set({ streamMaxFps: 2 }).where(eq(customers.id, customerId));
    const c = new Client(`${t.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` });
    await c.opened();
    await c.next(() => c.raw.length >= 1);
    const obs = { "observation/image": { data: new Uint8Array(224 * 224 * 3), shape: [224, 224, 3] }, prompt: "go" };
    for (let i = 2; i <= 4; i++) {
      c.ws.send(packMsgpackNumpy(obs));
      await c.next(() => c.raw.length >= i);
    }
    expect(c.raw.every((r) => r.isBinary)).toBe(true);
    c.close();
  });

  it("the upgrade carries the stream-time RateLimit headers; enterprise is unlimited", async () => {
    const { key } = await newKey(t, { tier: "free" });
    const up = rawUpgrade(t.baseUrl, "/v1/openpi", { authorization: `Api-Key ${key}` });
    const head = await up.head;
    expect(head.status).toBe(101);
    expect(head.headers).toMatch(/ratelimit-policy: "stream_day";q=1800;w=86400, "stream_month";q=18000;w=2592000/i);
    expect(head.headers).toMatch(/ratelimit: "stream_day";r=1800;t=\d+, "stream_month";r=18000;t=\d+/i);
    up.socket.destroy();
    const ent = await newKey(t, { tier: "enterprise" });
    const usage = (await t.app.inject({ method: "GET", url: "/v1/usage", headers: { "x-api-key": ent.key } })).json();
    expect(usage.stream_day).toMatchObject({ limit_s: null, remaining_s: null });
  });
});
