import { afterEach, describe, expect, it, vi } from "vitest";
import { AppError } from "../../platform/errors.ts";
import type { BatchingSettings } from "../models/registry.ts";
import { BatchScheduler } from "./scheduler.ts";

const settings = (over: Partial<BatchingSettings> = {}): BatchingSettings => ({
  maxBatchSize: 4,
  maxWaitMs: 5,
  maxQueue: 100,
  timeoutMs: 5_000,
  maxConcurrentBatches: 1,
  ...over,
});

/** A runner that records batches and lets the test release them one by one. */
function gatedRunner() {
  const batches: string[][] = [];
  const gates: (() => void)[] = [];
  const run = async (items: readonly string[]) => {
    batches.push([...items]);
    await new Promise<void>((r) => gates.push(r));
    return items.map((i) => `out:${i}`);
  };
  const releaseNext = async () => {
    for (let i = 0; i < 100 && gates.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    gates.shift()?.();
  };
  return { batches, run, releaseNext, pending: () => gates.length };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return e instanceof AppError ? e.code : String(e);
  }
  return undefined;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("BatchScheduler", () => {
  it("dispatches a lone request to an idle model at once, without waiting the window", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const seen: number[][] = [];
    const s = new BatchScheduler<number, number>(
      "m",
      settings({ maxBatchSize: 8, maxWaitMs: 60_000 }),
      async (items) => {
        seen.push([...items]);
        return [...items];
      },
    );
    const p = s.submit("a", 1);
    // The runner was called inside submit: no timer had to fire.
    expect(seen).toEqual([[1]]);
    expect(s.depth).toBe(0);
    const r = await p;
    expect(r.output).toBe(1);
    expect(r.batchSize).toBe(1);
    expect(r.queueMs).toBe(0);
    // Sequential callers (one request at a time) never wait either.
    expect((await s.submit("a", 2)).queueMs).toBe(0);
    expect(seen).toEqual([[1], [2]]);
  });

  it("batches what arrives while the model is busy and dispatches it when the batch ends", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const batches: string[][] = [];
    const gates: (() => void)[] = [];
    const s = new BatchScheduler<string, string>(
      "m",
      settings({ maxBatchSize: 4, maxWaitMs: 60_000 }),
      async (items) => {
        batches.push([...items]);
        await new Promise<void>((r) => gates.push(r));
        return items.map((i) => `out:${i}`);
      },
    );
    const all = [s.submit("A", "A0")];
    expect(batches).toEqual([["A0"]]);
    for (const x of ["A1", "A2", "A3", "B1", "B2"]) all.push(s.submit(x[0] as string, x));
    expect(s.depth).toBe(5);
    expect(batches).toHaveLength(1);
    gates.shift()?.();
    await vi.advanceTimersByTimeAsync(0);
    // No window: the waiting requests go as soon as the model is free, fairly, up to the batch size.
    expect(batches).toEqual([["A0"], ["A1", "B1", "A2", "B2"]]);
    gates.shift()?.();
    await vi.advanceTimersByTimeAsync(0);
    expect(batches).toEqual([["A0"], ["A1", "B1", "A2", "B2"], ["A3"]]);
    gates.shift()?.();
    expect((await Promise.all(all)).map((r) => r.batchSize)).toEqual([1, 4, 4, 1, 4, 4]);
  });

  it("forms full batches under concurrency without waiting", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const seen: number[] = [];
    const gates: (() => void)[] = [];
    const s = new BatchScheduler<number, number>(
      "m",
      settings({ maxBatchSize: 4, maxWaitMs: 60_000, maxConcurrentBatches: 2 }),
      async (items) => {
        seen.push(items.length);
        await new Promise<void>((r) => gates.push(r));
        return items.map((x) => x * 2);
      },
    );
    const all = Array.from({ length: 5 }, (_, i) => s.submit("c", i));
    // The first goes alone to the idle model; the next four fill the second slot at once.
    expect(seen).toEqual([1, 4]);
    for (const g of gates.splice(0)) g();
    const results = await Promise.all(all);
    expect(results.map((r) => r.output)).toEqual([0, 2, 4, 6, 8]);
  });

  it("while a batch runs, a partial batch for a free slot waits max wait", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const seen: number[] = [];
    const gates: (() => void)[] = [];
    const s = new BatchScheduler<number, number>(
      "m",
      settings({ maxBatchSize: 8, maxWaitMs: 20, maxConcurrentBatches: 2 }),
      async (items) => {
        seen.push(items.length);
        await new Promise<void>((r) => gates.push(r));
        return [...items];
      },
    );
    const first = s.submit("a", 0);
    expect(seen).toEqual([1]);
    const p = Promise.all([s.submit("a", 1), s.submit("b", 2), s.submit("a", 3)]);
    await vi.advanceTimersByTimeAsync(19);
    expect(seen).toEqual([1]);
    expect(s.depth).toBe(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual([1, 3]);
    for (const g of gates.splice(0)) g();
    expect((await p).map((r) => r.output)).toEqual([1, 2, 3]);
    expect((await first).output).toBe(0);
  });

  it("with max batch size 1 (batching off) runs each request alone", async () => {
    const seen: number[] = [];
    const s = new BatchScheduler<number, number>("m", settings({ maxBatchSize: 1 }), async (items) => {
      seen.push(items.length);
      return [...items];
    });
    await Promise.all(Array.from({ length: 5 }, (_, i) => s.submit("c", i)));
    expect(seen).toEqual([1, 1, 1, 1, 1]);
  });

  it("rejects overflow with 503 model_overloaded and Retry-After", async () => {
    const g = gatedRunner();
    const s = new BatchScheduler<string, string>("m", settings({ maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2 }), g.run);
    const first = s.submit("c", "1");
    const queued = [s.submit("c", "2"), s.submit("c", "3")];
    expect(s.depth).toBe(2);
    try {
      await s.submit("c", "4");
      expect.unreachable();
    } catch (e) {
      expect((e as AppError).code).toBe("model_overloaded");
      expect((e as AppError).status).toBe(503);
      expect(Number((e as AppError).headers["Retry-After"])).toBeGreaterThanOrEqual(1);
    }
    for (let i = 0; i < 3; i++) await g.releaseNext();
    expect((await first).output).toBe("out:1");
    expect((await Promise.all(queued)).map((r) => r.output)).toEqual(["out:2", "out:3"]);
  });

  it("serves customers round-robin: a burst from one tenant cannot starve another", async () => {
    const g = gatedRunner();
    const s = new BatchScheduler<string, string>("m", settings({ maxBatchSize: 2, maxWaitMs: 0 }), g.run);
    const all: Promise<unknown>[] = [];
    all.push(s.submit("A", "A0")); // dispatched alone at once
    for (let i = 1; i <= 10; i++) all.push(s.submit("A", `A${i}`));
    all.push(s.submit("B", "B1"), s.submit("B", "B2"));
    while (g.batches.length < 7) await g.releaseNext();
    await g.releaseNext();
    await Promise.all(all);
    expect(g.batches[0]).toEqual(["A0"]);
    expect(g.batches[1]).toEqual(["A1", "B1"]);
    expect(g.batches[2]).toEqual(["A2", "B2"]);
    expect(g.batches.flat()).toHaveLength(13);
  });

  it("times out a request that waits too long and removes it from the queue", async () => {
    const g = gatedRunner();
    const s = new BatchScheduler<string, string>("m", settings({ maxBatchSize: 1, maxWaitMs: 0 }), g.run);
    const first = s.submit("c", "slow", 60_000);
    const waiting = s.submit("c", "late", 30);
    expect(await codeOf(waiting)).toBe("inference_timeout");
    expect(s.depth).toBe(0);
    await g.releaseNext();
    expect((await first).output).toBe("out:slow");
    expect(g.batches).toEqual([["slow"]]);
  });

  it("times out an in-flight request without waiting for the backend", async () => {
    const g = gatedRunner();
    const s = new BatchScheduler<string, string>("m", settings({ maxBatchSize: 1, maxWaitMs: 0 }), g.run);
    expect(await codeOf(s.submit("c", "x", 20))).toBe("inference_timeout");
    await g.releaseNext();
  });

  it("passes per-item errors through and maps a failed batch to model_unavailable", async () => {
    const s = new BatchScheduler<number, number>("m", settings({ maxBatchSize: 2, maxWaitMs: 50 }), async (items) =>
      items.map((x) => (x < 0 ? new AppError("invalid_model_output") : x)),
    );
    const [ok, bad] = [s.submit("a", 1), s.submit("b", -1)];
    expect((await ok).output).toBe(1);
    expect(await codeOf(bad)).toBe("invalid_model_output");
    const broken = new BatchScheduler<number, number>("m", settings({ maxWaitMs: 0 }), async () => {
      throw new Error("boom");
    });
    expect(await codeOf(broken.submit("a", 1))).toBe("model_unavailable");
  });

  it("close rejects waiting requests with 503 and refuses new ones", async () => {
    const g = gatedRunner();
    const s = new BatchScheduler<string, string>("m", settings({ maxBatchSize: 1, maxWaitMs: 0 }), g.run);
    const running = s.submit("c", "1");
    const waiting = s.submit("c", "2");
    const closing = s.close();
    expect(await codeOf(waiting)).toBe("model_unavailable");
    await g.releaseNext();
    await closing;
    expect((await running).output).toBe("out:1");
    expect(await codeOf(s.submit("c", "3"))).toBe("model_unavailable");
  });
});
