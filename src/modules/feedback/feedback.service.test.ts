import { describe, expect, it } from "vitest";
import { isAppError } from "../../platform/errors.ts";
import type { FeedbackRepo, InferenceRef } from "./feedback.repo.ts";
import {
  actionError,
  canonicalJson,
  chunkError,
  FeedbackService,
  type LookupResult,
  requestHash,
} from "./feedback.service.ts";

const ref: InferenceRef = {
  id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
  createdAt: new Date(0),
  customerId: "c",
  robotId: "arm-1",
  model: "m",
  source: "rest",
  status: "ok",
  action: [0, 0, 0, 0, 0, 0, 0],
  actionChunk: null,
};

/** A repo whose inference row appears after `missesBefore` lookups (a row still buffered somewhere). */
function service(missesBefore: number, lookupWaitMs: number) {
  let lookups = 0;
  let flushes = 0;
  const seen: LookupResult[] = [];
  const repo = {
    findInference: async () => (lookups++ < missesBefore ? undefined : ref),
  } as unknown as FeedbackRepo;
  const svc = new FeedbackService({
    repo,
    flushInferenceLogs: async () => {
      flushes++;
    },
    lookupWaitMs,
    maxAgeDays: 90,
    now: () => 0,
    events: { lookup: (r) => seen.push(r) },
  });
  return { svc, seen, counts: () => ({ lookups, flushes }) };
}

describe("FeedbackService.findInference", () => {
  it("found at once: no flush", async () => {
    const s = service(0, 0);
    await s.svc.findInference("c", ref.id);
    expect(s.counts()).toEqual({ lookups: 1, flushes: 0 });
    expect(s.seen).toEqual(["found"]);
  });

  it("buffered here: flushes the log writer once and finds it", async () => {
    const s = service(1, 0);
    await s.svc.findInference("c", ref.id);
    expect(s.counts()).toEqual({ lookups: 2, flushes: 1 });
    expect(s.seen).toEqual(["found_after_flush"]);
  });

  it("buffered by another instance: waits once and finds it (only when waiting is on)", async () => {
    const s = service(2, 5);
    await s.svc.findInference("c", ref.id);
    expect(s.counts()).toEqual({ lookups: 3, flushes: 1 });
    expect(s.seen).toEqual(["found_after_wait"]);

    const off = service(2, 0);
    const err = await off.svc.findInference("c", ref.id).catch((e: unknown) => e);
    expect(isAppError(err) && err.code).toBe("not_found");
    expect(off.counts()).toEqual({ lookups: 2, flushes: 1 });
    expect(off.seen).toEqual(["not_found"]);
  });
});

describe("correction arithmetic", () => {
  it("L2 per part of a single action", () => {
    expect(actionError([4, 6, 3, 0.5, -0.5, 1, 1], [1, 2, 3, 0.5, -0.5, 0, 0])).toEqual({
      translation: 5,
      rotation: 1,
      gripper: 1,
    });
    expect(actionError([0, 0, 0, 2, 3, 6, -0.5], [0, 0, 0, 0, 0, 0, 0.5])).toEqual({
      translation: 0,
      rotation: 7,
      gripper: 1,
    });
  });

  it("a chunk: the mean over steps of each step's error", () => {
    const model = [
      [0, 0, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
      [0, 0, 0, 0, 0, 0, 0],
    ];
    const corrected = [
      [3, 4, 0, 0, 0, 0, 0],
      [1, 1, 1, 1, 1, 1, 1],
      [0, 0, 0, 0, 0, 3, 0.75],
    ];
    const e = chunkError(corrected, model);
    expect(e).toEqual({ translation: 5 / 3, rotation: 1, gripper: 0.25 });
  });
});

describe("request identity", () => {
  it("is independent of member order and sensitive to every value and the route", () => {
    const a = { inference_id: "x", rating: 4, comment: "c" };
    const b = { comment: "c", rating: 4, inference_id: "x" };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(requestHash("success", a)).toBe(requestHash("success", b));
    expect(requestHash("success", a)).not.toBe(requestHash("safety", a));
    expect(requestHash("success", a)).not.toBe(requestHash("success", { ...a, rating: 5 }));
    expect(requestHash("success", a)).not.toBe(requestHash("success", { inference_id: "x", rating: 4 }));
    expect(canonicalJson({ a: [1, { c: 2, b: 1 }] })).toBe('{"a":[1,{"b":1,"c":2}]}');
  });
});
