import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEpisodes } from "../../sim/closed-loop.ts";
import { type EpisodeResult, setupEpisode } from "../../sim/episode.ts";
import { protocolPolicy, sendEpisodeFeedback } from "../../sim/protocols.ts";
import { exclusionBox, inside, safetyScenario } from "../../sim/safety-scenario.ts";
import { PROTOCOLS, type Protocol } from "../../sim/server-policy.ts";
import { apiKeys, customers, feedback } from "../../src/platform/db/schema/index.ts";
import { seedKey } from "../helpers/limits.ts";
import { buildStreamApp, newKey, type StreamTestContext } from "../streaming/helpers.ts";

/**
 * The closed loop against the real app listening on 127.0.0.1: the same seed through REST,
 * /act, the native stream and openpi must give the same actions at every step (one shared
 * path), chunk answers are executed, feedback lands on the episode's last inference and a
 * safety profile keeps the end effector inside its box.
 */

let ctx: StreamTestContext;
let url: string;

beforeAll(async () => {
  ctx = await buildStreamApp();
  url = ctx.baseUrl.replace(/^ws/, "http");
  // /act names no model: the key's model is used.
  await ctx.database.db.update(apiKeys).set({ model: "demo-vla-tiny" }).where(eq(apiKeys.id, ctx.keyId));
});

afterAll(async () => {
  await ctx?.close();
});

async function run(
  protocol: Protocol,
  model: string,
  options: { steps: number; executeSteps?: number; seed?: number; instruction?: string },
) {
  const server = protocolPolicy(protocol, {
    url,
    key: ctx.key,
    robotId: `sim-${protocol}-${model}`,
    ...(protocol === "act" ? {} : { model }),
    ...(options.executeSteps !== undefined ? { executeSteps: options.executeSteps } : {}),
  });
  const results: EpisodeResult[] = [];
  const ids: string[][] = [];
  await runEpisodes(server.policy, {
    episodes: 1,
    seedStart: options.seed ?? 3,
    instruction: options.instruction ?? "pick up the red block",
    maxSteps: options.steps,
    beforeEpisode: (setup) => server.beginEpisode(setup.instruction),
    afterEpisode: async (result) => {
      ids.push(await server.endEpisode());
      results.push(result);
    },
  });
  return { result: results[0] as EpisodeResult, calls: server.calls, ids: ids[0] as string[] };
}

describe("the closed loop through every protocol", () => {
  it("gives the same actions at every step through REST, /act, the stream and openpi (demo-vla-tiny)", async () => {
    const runs = new Map<Protocol, Awaited<ReturnType<typeof run>>>();
    for (const protocol of PROTOCOLS) runs.set(protocol, await run(protocol, "demo-vla-tiny", { steps: 8 }));
    // openpi's wire is float32: compare every protocol at float32 precision.
    const f32 = (actions: number[][]) => actions.map((a) => a.map(Math.fround));
    const rest = runs.get("rest");
    expect(rest?.result.steps).toBe(8);
    expect(rest?.calls).toHaveLength(8);
    const reference = f32(rest?.result.actions ?? []);
    // The answers depend on the input (another instruction, another action): equal actions mean equal inputs.
    const other = await run("rest", "demo-vla-tiny", { steps: 1, instruction: "move to the green block" });
    expect(f32(other.result.actions)[0]).not.toEqual(reference[0]);
    for (const protocol of PROTOCOLS) {
      const r = runs.get(protocol);
      expect(f32(r?.result.actions ?? []), protocol).toEqual(reference);
      expect(r?.ids, protocol).toHaveLength(8);
      expect(new Set(r?.calls.map((c) => c.chunk)), protocol).toEqual(new Set([1]));
    }
  });

  it("executes mock-pi0's chunks via stream and openpi: all 10 steps by default, the first N with executeSteps", async () => {
    for (const protocol of ["stream", "openpi"] as const) {
      const all = await run(protocol, "mock-pi0", { steps: 20 });
      expect(
        all.calls.map((c) => c.chunk),
        protocol,
      ).toEqual([10, 10]);
      const three = await run(protocol, "mock-pi0", { steps: 9, executeSteps: 3 });
      expect(
        three.calls.map((c) => c.chunk),
        protocol,
      ).toEqual([10, 10, 10]);
      expect(three.ids, protocol).toHaveLength(3);
    }
    // Both protocols applied the same chunk steps.
    const stream = await run("stream", "mock-pi0", { steps: 12 });
    const openpi = await run("openpi", "mock-pi0", { steps: 12 });
    expect(openpi.result.actions.map((a) => a.map(Math.fround))).toEqual(
      stream.result.actions.map((a) => a.map(Math.fround)),
    );
  });

  it("sends a stream frame dropped for the frame-rate ceiling again, and openpi waits for it", async () => {
    const slow = await newKey(ctx, { tier: "free", perMinute: 1000 });
    await ctx.database.db.update(customers).set({ streamMaxFps: 2 }).where(eq(customers.id, slow.customerId));
    await ctx.database.db.update(apiKeys).set({ model: "demo-vla-tiny" }).where(eq(apiKeys.id, slow.keyId));
    for (const protocol of ["stream", "openpi"] as const) {
      const server = protocolPolicy(protocol, { url, key: slow.key, robotId: `slow-${protocol}` });
      const report = await runEpisodes(
        server.policy,
        {
          episodes: 1,
          instruction: "pick up the red block",
          maxSteps: 4,
          beforeEpisode: (setup) => server.beginEpisode(setup.instruction),
          afterEpisode: async () => {
            await server.endEpisode();
          },
        },
        server.calls,
      );
      expect(report.episodes[0]?.steps, protocol).toBe(4);
      expect(server.calls, protocol).toHaveLength(4);
    }
  });

  it("turns refusals into InferenceErrors with the problem's status and code", async () => {
    const badKey = protocolPolicy("openpi", { url, key: "vla_live_nope", model: "mock-pi0" });
    await expect(badKey.beginEpisode("pick up the red block")).rejects.toMatchObject({ status: 401 });
    const unknownModel = protocolPolicy("openpi", { url, key: ctx.key, model: "no-such-model" });
    await expect(unknownModel.beginEpisode("pick up the red block")).rejects.toMatchObject({
      status: 404,
      code: "unknown_model",
    });
    const stream = protocolPolicy("stream", { url, key: ctx.key, model: "no-such-model" });
    await expect(stream.beginEpisode("pick up the red block")).rejects.toMatchObject({ code: "unknown_model" });
    await stream.endEpisode();
    const rest = protocolPolicy("rest", { url, key: ctx.key, model: "no-such-model" });
    const setup = setupEpisode(1, { instruction: "pick up the red block" });
    await expect(
      runEpisodes(rest.policy, { episodes: 1, instruction: setup.instruction, maxSteps: 1 }),
    ).rejects.toMatchObject({
      status: 404,
      code: "unknown_model",
    });
  });

  it("sends each episode's outcome as feedback on its last inference", async () => {
    const { result, ids } = await run("rest", "demo-vla-tiny", { steps: 3 });
    const last = ids.at(-1) as string;
    const sent = await sendEpisodeFeedback({ url, key: ctx.key }, last, result);
    expect(sent).toHaveLength(result.success ? 1 : 2);
    const rows = await ctx.database.db.select().from(feedback).where(eq(feedback.inferenceId, last));
    expect(rows.map((r) => r.type).sort()).toEqual(result.success ? ["success"] : ["failure", "success"]);
  });

  it("keeps the end effector inside a workspace that excludes the red block, clamping at the boundary", async () => {
    const admin = await seedKey(ctx.database, ctx.customerId, { scopes: ["admin"] });
    for (const protocol of ["rest", "stream"] as const) {
      const robotId = `fence-${protocol}`;
      const server = protocolPolicy(protocol, { url, key: ctx.key, robotId, model: "mock-openvla-7b" });
      const scenario = safetyScenario(
        { url, key: ctx.key, adminKey: admin.key, robotId, profile: "exclude-red" },
        server.calls,
      );
      const report = await runEpisodes(
        server.policy,
        {
          episodes: 2,
          instruction: "pick up the red block",
          maxSteps: 40,
          beforeEpisode: async (setup) => {
            await scenario.before(setup);
            await server.beginEpisode(setup.instruction);
          },
          afterEpisode: async (result) => {
            await server.endEpisode();
            await scenario.after(result);
          },
        },
        server.calls,
      );
      await scenario.restore();
      const after = await fetch(`${url}/v1/robots/${robotId}/safety-profile`, { headers: { "x-api-key": ctx.key } });
      expect(((await after.json()) as { stored: unknown }).stored, protocol).toBeNull(); // no profile before: deleted again
      expect(scenario.report.episodes, protocol).toHaveLength(2);
      expect(scenario.report.neverOutside, protocol).toBe(true);
      expect(scenario.report.clampedAtBoundary, protocol).toBeGreaterThan(0);
      expect(scenario.report.clampedCalls, protocol).toBeGreaterThanOrEqual(scenario.report.clampedAtBoundary);
      expect(report.safety.clamped, protocol).toBe(scenario.report.clampedCalls);
      expect(report.successRate, protocol).toBe(0);
    }
  });

  it("keeps the rest of a stored profile during the run and puts it back afterwards", async () => {
    const admin = await seedKey(ctx.database, ctx.customerId, { scopes: ["admin"] });
    const robotId = "fence-stored";
    const profileUrl = `${url}/v1/robots/${robotId}/safety-profile`;
    const original = { control_hz: 5, max_linear_velocity: 0.4 };
    const put = await fetch(profileUrl, {
      method: "PUT",
      headers: { "x-api-key": admin.key, "content-type": "application/json" },
      body: JSON.stringify(original),
    });
    expect(put.status).toBe(200);
    const stored = async () =>
      ((await (await fetch(profileUrl, { headers: { "x-api-key": ctx.key } })).json()) as { stored: unknown }).stored;
    const scenario = safetyScenario({ url, key: ctx.key, adminKey: admin.key, robotId, profile: "exclude-blue" }, []);
    const setup = setupEpisode(2, { instruction: "pick up the blue block" });
    await scenario.before(setup);
    expect(await stored()).toEqual({ ...original, workspace: exclusionBox(setup.scene, "blue") });
    await scenario.restore();
    expect(await stored()).toEqual(original);
  });

  it("refuses a profile with an inference key (the flag needs an admin key) and an unknown profile name", async () => {
    const scenario = safetyScenario({ url, key: ctx.key, adminKey: ctx.key, robotId: "x", profile: "exclude-red" }, []);
    const setup = setupEpisode(1, { instruction: "pick up the red block" });
    await expect(scenario.before(setup)).rejects.toMatchObject({ status: 403 });
    expect(() =>
      safetyScenario({ url, key: ctx.key, adminKey: ctx.key, robotId: "x", profile: "exclude-purple" }, []),
    ).toThrow(/unknown safety profile/);
    expect(inside({ x: [0, 1], y: [0, 1], z: [0, 1] }, [0.5, 0.5, 1.01])).toBe(false);
  });
});
