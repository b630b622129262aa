import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { describe, expect, it, vi } from "vitest";
import { percentile, runEpisodes } from "../../sim/closed-loop.ts";
import { expertPolicy, robotState, setupEpisode } from "../../sim/episode.ts";
import { render } from "../../sim/render.ts";
import { InferenceError, restPolicy } from "../../sim/rest-policy.ts";

type Captured = { url: string; headers: Record<string, string>; body: Record<string, unknown> };

/** A fetch that records requests and answers from a list (the last answer repeats). */
function fakeFetch(answers: { status: number; body: unknown; headers?: Record<string, string> }[]) {
  const requests: Captured[] = [];
  let n = 0;
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    requests.push({
      url: String(input),
      headers: init?.headers as Record<string, string>,
      body: JSON.parse(String(init?.body)),
    });
    const answer = answers[Math.min(n++, answers.length - 1)] as (typeof answers)[number];
    return new Response(JSON.stringify(answer.body), {
      status: answer.status,
      headers: { "content-type": "application/json", ...(answer.headers ?? {}) },
    });
  }) as typeof fetch;
  return { fn, requests };
}

const ok = (action: number[], status = "pass") => ({
  status: 200,
  body: { action, safety: { status, raw_action: action }, timing: { total_ms: 2.5 } },
});

function observation(seed = 1) {
  const setup = setupEpisode(seed, { instruction: "pick up the red block" });
  return {
    frame: render(setup.scene),
    instruction: setup.instruction,
    state: robotState(setup.scene),
    step: 0,
    scene: setup.scene,
  };
}

describe("restPolicy", () => {
  it("POSTs the frame losslessly (a json_numpy uint8 array), the instruction and the robot state to /v1/inference with the key", async () => {
    const fake = fakeFetch([ok([0.01, 0, 0, 0, 0, 0, 1])]);
    const { policy, calls } = restPolicy({
      url: "http://server.test:8000",
      key: "vla_live_x",
      model: "tabletop",
      unnormKey: "sim_tabletop",
      fetch: fake.fn,
    });
    const obs = observation();
    expect(await policy(obs)).toEqual([0.01, 0, 0, 0, 0, 0, 1]);
    const request = fake.requests[0] as Captured;
    expect(request.url).toBe("http://server.test:8000/v1/inference");
    expect(request.headers["x-api-key"]).toBe("vla_live_x");
    expect(request.body).toMatchObject({
      instruction: "pick up the red block",
      robot_id: "sim-arm",
      model: "tabletop",
      unnorm_key: "sim_tabletop",
      robot_state: { ee_position: obs.state.eePosition, gripper: 1 },
    });
    const image = request.body.image as { __numpy__: string; dtype: string; shape: number[] };
    expect([image.dtype, image.shape]).toEqual(["|u1", [224, 224, 3]]);
    expect(Buffer.from(image.__numpy__, "base64").equals(Buffer.from(obs.frame.data))).toBe(true);
    expect(calls).toEqual([
      expect.objectContaining({ serverMs: 2.5, safety: "pass", action: [0.01, 0, 0, 0, 0, 0, 1] }),
    ]);
  });

  it("waits for Retry-After on 429 and retries", async () => {
    const fake = fakeFetch([
      { status: 429, body: { code: "quota_exceeded" }, headers: { "retry-after": "7" } },
      ok([0, 0, 0, 0, 0, 0, 0]),
    ]);
    const waits: number[] = [];
    const { policy } = restPolicy({
      url: "http://s",
      key: "k",
      fetch: fake.fn,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    expect(await policy(observation())).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(waits).toEqual([7000]);
  });

  it("does not count the Retry-After wait in the call's latency", async () => {
    // A fake clock: each request takes 5 ms, the wait 7 s.
    let now = 0;
    const clock = vi.spyOn(performance, "now").mockImplementation(() => now);
    try {
      const fake = fakeFetch([
        { status: 429, body: { code: "rate_limited" }, headers: { "retry-after": "7" } },
        ok([0, 0, 0, 0, 0, 0, 0]),
      ]);
      const { policy, calls } = restPolicy({
        url: "http://s",
        key: "k",
        fetch: async (...args: Parameters<typeof fetch>) => {
          now += 5;
          return fake.fn(...args);
        },
        sleep: async (ms) => {
          now += ms;
        },
      });
      await policy(observation());
      expect(calls[0]?.latencyMs).toBe(10); // both attempts, not the 7 s between them
    } finally {
      clock.mockRestore();
    }
  });

  it("turns a problem document into an InferenceError with its code, and refuses an answer without a 7-D action", async () => {
    const denied = restPolicy({
      url: "http://s",
      key: "k",
      fetch: fakeFetch([{ status: 401, body: { code: "invalid_api_key", detail: "the key is not valid" } }]).fn,
    });
    await expect(denied.policy(observation())).rejects.toMatchObject({
      name: "InferenceError",
      status: 401,
      code: "invalid_api_key",
    });
    const broken = restPolicy({
      url: "http://s",
      key: "k",
      fetch: fakeFetch([{ status: 200, body: { action: [1, 2] } }]).fn,
    });
    await expect(broken.policy(observation())).rejects.toBeInstanceOf(InferenceError);
  });
});

describe("runEpisodes", () => {
  it("reports success rate, steps, latency and safety verdicts, and writes the first episode's GIF", async () => {
    const fake = fakeFetch([ok([0, 0, 0.01, 0, 0, 0, 1], "pass"), ok([0, 0, -0.01, 0, 0, 0, 1], "clamped")]);
    const rest = restPolicy({ url: "http://s", key: "k", fetch: fake.fn });
    const dir = mkdtempSync(path.join(tmpdir(), "sim-loop-"));
    try {
      const gif = path.join(dir, "first.gif");
      const report = await runEpisodes(rest.policy, { episodes: 2, kind: "pick", maxSteps: 5, gif }, rest.calls);
      expect(report.episodes.map((e) => [e.seed, e.success, e.steps])).toEqual([
        [0, false, 5],
        [1, false, 5],
      ]);
      expect(report.successRate).toBe(0);
      expect(report.meanSteps).toBe(5);
      expect(report.latency?.n).toBe(10);
      expect(report.serverLatency?.p50).toBe(2.5);
      expect(report.safety).toEqual({ pass: 1, clamped: 9 });
      expect(report.gif).toBe(gif);
      expect((await sharp(gif).metadata()).pages).toBe(6);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs the expert locally: every held-out pick episode succeeds", async () => {
    const report = await runEpisodes(expertPolicy, { episodes: 20, kind: "pick" });
    expect(report.successRate).toBe(1);
    expect(report.latency).toBeNull();
    expect(report.gif).toBeNull();
  });

  it("computes nearest-rank percentiles", () => {
    expect(percentile([5, 1, 3, 2, 4], 0.5)).toBe(3);
    expect(percentile([5, 1, 3, 2, 4], 0.99)).toBe(5);
    expect(percentile([], 0.5)).toBeNaN();
  });
});
