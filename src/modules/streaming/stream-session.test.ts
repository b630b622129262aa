import { describe, expect, it } from "vitest";
import { errors } from "../../platform/errors.ts";
import type { DecodedAction, RunOutput } from "../inference/inference-runner.ts";
import type { FrameMessage, StartMessage } from "./protocol.ts";
import { DEFAULT_SMOOTHING } from "./smoothing.ts";
import { type QueuedFrame, type SessionPorts, StreamSession } from "./stream-session.ts";

interface Call {
  frame: QueuedFrame;
  previous: readonly number[] | null;
  postprocess: (d: DecodedAction) => DecodedAction;
  resolve: (action: number[], chunk?: number[][]) => void;
  reject: (e: unknown) => void;
}

function harness(
  opts: { maxFps?: number | null; buffered?: () => number; maxMustGo?: number; start?: Partial<StartMessage> } = {},
) {
  const sent: Record<string, unknown>[] = [];
  const calls: Call[] = [];
  const outcomes: string[] = [];
  const logged: unknown[] = [];
  let t = 0;
  const ports: SessionPorts = {
    infer: (frame, previous, postprocess) =>
      new Promise<RunOutput>((resolve, reject) => {
        calls.push({
          frame,
          previous,
          postprocess,
          reject,
          resolve: (action, chunk) => {
            const d = postprocess({ action, actionChunk: chunk });
            resolve({
              id: `inf-${frame.seq}`,
              result: { timing: { queue_ms: 1, model_ms: 2, preprocess_ms: 0 } } as RunOutput["result"],
              action: d.action,
              actionChunk: d.actionChunk,
              safety: { status: "pass" } as RunOutput["safety"],
              totalMs: 3,
            });
          },
        });
      }),
    send: (m) => sent.push(m),
    bufferedAmount: () => opts.buffered?.() ?? 0,
    now: () => t,
    outcome: (o) => outcomes.push(o),
    logError: (e) => logged.push(e),
  };
  const settings: StartMessage = {
    type: "start",
    model: "m",
    robotId: "r",
    unnormKey: "k",
    instruction: "go",
    targetFps: 10,
    smoothing: DEFAULT_SMOOTHING,
    chunkAggregation: "weighted",
    ...opts.start,
  };
  const session = new StreamSession("s1", settings, ports, {
    sendBufferBytes: 1000,
    maxMustGoQueue: opts.maxMustGo ?? 8,
    maxFps: opts.maxFps ?? null,
  });
  const frame = (seq: number, mustGo = false): FrameMessage => ({
    type: "frame",
    seq,
    image: { imageBytes: new Uint8Array([seq]) },
    instruction: undefined,
    robotState: undefined,
    timestamp: undefined,
    mustGo,
  });
  const tick = () => new Promise((r) => setImmediate(r));
  return { session, sent, calls, outcomes, logged, frame, tick, advance: (ms: number) => (t += ms) };
}

const seqs = (sent: Record<string, unknown>[], type: string) => sent.filter((m) => m.type === type).map((m) => m.seq);

describe("StreamSession scheduling", () => {
  it("one inference in flight; the newest waiting frame wins, older waiting ones are dropped as superseded", async () => {
    const h = harness();
    h.session.submit(h.frame(1));
    await h.tick();
    h.session.submit(h.frame(2));
    h.session.submit(h.frame(3));
    h.session.submit(h.frame(4));
    await h.tick();
    expect(h.calls).toHaveLength(1);
    expect(h.sent.filter((m) => m.type === "dropped")).toEqual([
      { type: "dropped", seq: 2, reason: "superseded" },
      { type: "dropped", seq: 3, reason: "superseded" },
    ]);
    h.calls[0]?.resolve([1, 2, 3, 4, 5, 6, 1]);
    await h.tick();
    await h.tick();
    expect(h.calls.map((c) => c.frame.seq)).toEqual([1, 4]);
    h.calls[1]?.resolve([1, 2, 3, 4, 5, 6, 1]);
    await h.session.idle();
    expect(seqs(h.sent, "action")).toEqual([1, 4]);
    const s = h.session.stats.snapshot();
    expect(s).toMatchObject({ frames_received: 4, frames_inferred: 2, frames_dropped: { superseded: 2 } });
  });

  it("must_go frames are never superseded and run in order before the latest normal frame", async () => {
    const h = harness();
    h.session.submit(h.frame(1));
    await h.tick();
    h.session.submit(h.frame(2, true));
    h.session.submit(h.frame(3));
    h.session.submit(h.frame(4, true));
    h.session.submit(h.frame(5));
    for (let i = 0; i < 4; i++) {
      h.calls[i]?.resolve([0, 0, 0, 0, 0, 0, 0]);
      await h.tick();
      await h.tick();
    }
    await h.session.idle();
    expect(h.calls.map((c) => c.frame.seq)).toEqual([1, 2, 4, 5]);
    expect(seqs(h.sent, "dropped")).toEqual([3]);
  });

  it("must_go frames beyond the queue bound are dropped as overloaded", async () => {
    const h = harness({ maxMustGo: 1 });
    h.session.submit(h.frame(1));
    await h.tick();
    h.session.submit(h.frame(2, true));
    h.session.submit(h.frame(3, true));
    expect(h.sent).toContainEqual({ type: "dropped", seq: 3, reason: "overloaded" });
  });

  it("passes the previous sent action to the runner", async () => {
    const h = harness();
    h.session.submit(h.frame(1));
    await h.tick();
    expect(h.calls[0]?.previous).toBeNull();
    h.calls[0]?.resolve([1, 1, 1, 1, 1, 1, 1]);
    await h.session.idle();
    h.session.submit(h.frame(2));
    await h.tick();
    expect(h.calls[1]?.previous).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });

  it("frames above the tier's frame-rate ceiling are dropped rate_ceiling and not inferred", async () => {
    const h = harness({ maxFps: 2 });
    // A burst of one second's worth passes; the third frame in the same instant is over the ceiling.
    h.session.submit(h.frame(1));
    h.session.submit(h.frame(2, true));
    h.session.submit(h.frame(3, true));
    expect(h.sent).toEqual([{ type: "dropped", seq: 3, reason: "rate_ceiling", max_fps: 2 }]);
    expect(h.outcomes).toEqual(["rate_ceiling"]);
    expect(h.session.stats.snapshot().frames_dropped.rate_ceiling).toBe(1);
    // Half a second later one more frame's worth has refilled.
    h.advance(500);
    h.session.submit(h.frame(4, true));
    h.session.submit(h.frame(5, true));
    expect(seqs(h.sent, "dropped")).toEqual([3, 5]);
    for (let i = 0; i < 3; i++) {
      await h.tick();
      h.calls[i]?.resolve([1, 1, 1, 1, 1, 1, 1]);
    }
    await h.session.idle();
    expect(seqs(h.sent, "action")).toEqual([1, 2, 4]);
  });

  it("a 10 Hz robot stays under the free tier's 15 fps ceiling", async () => {
    const h = harness({ maxFps: 15 });
    for (let seq = 1; seq <= 100; seq++) {
      h.session.submit(h.frame(seq, true));
      await h.tick();
      h.calls[seq - 1]?.resolve([1, 1, 1, 1, 1, 1, 1]);
      await h.session.idle();
      h.advance(100);
    }
    expect(h.session.stats.snapshot().frames_dropped.rate_ceiling).toBe(0);
    expect(seqs(h.sent, "action")).toHaveLength(100);
  });

  it("slow consumer: frames arriving while the send buffer is above the bound are dropped unanswered", async () => {
    let buffered = 5000;
    const h = harness({ buffered: () => buffered });
    h.session.submit(h.frame(1));
    h.session.submit(h.frame(2));
    await h.session.idle();
    expect(h.calls).toHaveLength(0);
    expect(h.sent).toEqual([]);
    expect(h.session.stats.snapshot().frames_dropped.overloaded).toBe(2);
    buffered = 0;
    h.session.submit(h.frame(3));
    await h.tick();
    expect(h.calls).toHaveLength(1);
  });

  it("engine errors become error messages (overload becomes dropped overloaded); the session continues", async () => {
    const h = harness();
    h.session.submit(h.frame(1));
    await h.tick();
    h.calls[0]?.reject(errors.robotStopped("r", "2026-01-01T00:00:00Z", "collision"));
    await h.session.idle();
    expect(h.sent[0]).toMatchObject({ type: "error", seq: 1, code: "robot_stopped" });
    h.session.submit(h.frame(2));
    await h.tick();
    h.calls[1]?.reject(errors.modelOverloaded("m"));
    await h.session.idle();
    expect(h.sent[1]).toEqual({ type: "dropped", seq: 2, reason: "overloaded" });
    h.session.submit(h.frame(3));
    await h.tick();
    h.calls[2]?.reject(new Error("boom"));
    await h.session.idle();
    expect(h.sent[2]).toMatchObject({ type: "error", seq: 3, code: "internal_error" });
    expect(h.logged).toHaveLength(1);
  });

  it("seq must grow", () => {
    const h = harness();
    expect(h.session.submit(h.frame(5))).toBe("ok");
    expect(h.session.submit(h.frame(5))).toBe("stale_seq");
    expect(h.session.submit(h.frame(4))).toBe("stale_seq");
  });

  it("stopAccepting drops the waiting frame but lets must_go frames finish", async () => {
    const h = harness();
    h.session.submit(h.frame(1));
    await h.tick();
    h.session.submit(h.frame(2, true));
    h.session.submit(h.frame(3));
    h.session.stopAccepting();
    h.session.submit(h.frame(4));
    const idle = h.session.idle();
    h.calls[0]?.resolve([0, 0, 0, 0, 0, 0, 0]);
    await h.tick();
    await h.tick();
    h.calls[1]?.resolve([0, 0, 0, 0, 0, 0, 0]);
    await idle;
    expect(seqs(h.sent, "action")).toEqual([1, 2]);
    expect(seqs(h.sent, "dropped")).toEqual([3]);
  });

  it("applies chunk aggregation and smoothing in the runner's postprocess, with the frame's seq as timestep", async () => {
    const h = harness({ start: { smoothing: { method: "ema", alpha: 0.5, window: 3, gripper: false } } });
    h.session.submit(h.frame(10));
    await h.tick();
    h.calls[0]?.resolve(
      [2, 2, 2, 2, 2, 2, 1],
      [
        [2, 2, 2, 2, 2, 2, 1],
        [4, 4, 4, 4, 4, 4, 1],
      ],
    );
    await h.session.idle();
    h.session.submit(h.frame(11));
    await h.tick();
    h.calls[1]?.resolve(
      [0, 0, 0, 0, 0, 0, 0],
      [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
      ],
    );
    await h.session.idle();
    const a = h.sent.filter((m) => m.type === "action")[1] as { action: number[]; action_chunk: number[][] };
    // timestep 11: weighted 0.3 * 4 + 0.7 * 0 = 1.2; EMA with previous 2: 0.5 * 1.2 + 0.5 * 2 = 1.6; gripper 0.3.
    expect(a.action.map((v) => Math.round(v * 1e9) / 1e9)).toEqual([1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 0.3]);
    expect(a.action_chunk[0]).toEqual(a.action);
    expect(a.action_chunk[1]).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });
});
