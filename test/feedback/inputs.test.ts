import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InferenceTestContext } from "../inference/helpers.ts";
import { buildFeedbackApp, expectProblem, type Json, newKey, post, postRaw, seedInference, xKey } from "./helpers.ts";

/** Bad input on every feedback route: each is a 4xx problem naming the field, never a 5xx or a stored row. */
let t: InferenceTestContext;
let key: string;
let id: string;
beforeAll(async () => {
  t = await buildFeedbackApp();
  const c = await newKey(t);
  key = c.key;
  id = await seedInference(t, c.customerId);
});
afterAll(async () => {
  await t?.close();
});

const seven = [0, 0, 0, 0, 0, 0, 0];
const valid: Record<string, Json> = {
  success: { rating: 3 },
  safety: { rating: 3, observed_issue: "collision" },
  correction: { corrected_action: seven },
  failure: { failure_type: "timeout", description: "stalled" },
};
const withId = (type: string, over: Json = {}) => ({ inference_id: id, ...valid[type], ...over });

async function expectRefused(type: string, body: unknown, status = 422, code = "validation_failed") {
  const res = await post(t, type, xKey(key), body);
  return expectProblem(res, status, code);
}

describe("bad feedback input", () => {
  for (const type of ["success", "safety", "correction", "failure"]) {
    it(`${type}: malformed JSON, wrong types, unknown members, missing or malformed inference_id`, async () => {
      expectProblem(await postRaw(t, type, xKey(key), '{"inference_id": '), 400, "invalid_json");
      expectProblem(await postRaw(t, type, xKey(key), "[]"), 422, "validation_failed");
      expectProblem(await postRaw(t, type, xKey(key), "null"), 422, "validation_failed");
      await expectRefused(type, withId(type, { inference_id: 42 }));
      await expectRefused(type, withId(type, { inference_id: "not-a-uuid" }));
      await expectRefused(type, { ...valid[type] });
      await expectRefused(type, withId(type, { extra: true }));
      const nul = await postRaw(t, type, xKey(key), JSON.stringify(withId(type, { comment: "a\u0000b" })));
      expectProblem(nul, 400, "invalid_character");
      const wrongType = await t.app.inject({
        method: "POST",
        url: `/v1/feedback/${type}`,
        headers: { ...xKey(key), "content-type": "text/plain" },
        payload: "rating=3",
      });
      expectProblem(wrongType, 415, "unsupported_media_type");
    });
  }

  for (const type of ["success", "safety"]) {
    it(`${type}: rating must be an integer 1-5`, async () => {
      for (const rating of [0, 6, 2.5, "3", null, -1]) await expectRefused(type, withId(type, { rating }));
      await expectRefused(type, { inference_id: id });
      for (const raw of ["1e309", "NaN", "Infinity"]) {
        const res = await postRaw(t, type, xKey(key), `{"inference_id":"${id}","rating":${raw}}`);
        expect([400, 422]).toContain(res.statusCode);
      }
    });
  }

  it("comments are bounded (2000 characters) and must be strings", async () => {
    for (const type of ["success", "safety", "correction"]) {
      const p = await expectRefused(type, withId(type, { comment: "x".repeat(2001) }));
      expect(JSON.stringify(p.errors)).toContain("/comment");
      await expectRefused(type, withId(type, { comment: 7 }));
    }
    // Exactly 2000 is fine.
    const ok = await post(t, "success", xKey(key), withId("success", { comment: "y".repeat(2000) }));
    expect(ok.statusCode, ok.body).toBe(201);
  });

  it("other control characters are stored as sent (JSON escapes them on the way out)", async () => {
    const res = await post(t, "success", xKey(key), withId("success", { comment: "line1\nline2\t\u0007" }));
    expect(res.statusCode, res.body).toBe(201);
    expect((res.json() as Json).comment).toBe("line1\nline2\t\u0007");
  });

  it("safety: observed_issue must be a known value", async () => {
    await expectRefused("safety", withId("safety", { observed_issue: "explosion" }));
    await expectRefused("safety", withId("safety", { observed_issue: "" }));
  });

  it("failure: failure_type and severity must be known; description is required, non-blank and bounded", async () => {
    await expectRefused("failure", withId("failure", { failure_type: "meh" }));
    await expectRefused("failure", withId("failure", { severity: "apocalyptic" }));
    await expectRefused("failure", { inference_id: id, failure_type: "timeout" });
    await expectRefused("failure", withId("failure", { description: "" }));
    await expectRefused("failure", withId("failure", { description: "   " }));
    await expectRefused("failure", withId("failure", { description: "d".repeat(2001) }));
    await expectRefused("failure", withId("failure", { comment: "failures carry a description" }));
  });

  it("correction: 7 finite numbers within +-10; chunk steps likewise", async () => {
    for (const corrected_action of [
      [0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0],
      [],
      [0, 0, 0, 0, 0, 0, "1"],
      [0, 0, 0, 0, 0, 0, null],
      [0, 0, 0, 0, 0, 0, 10.5],
      [-11, 0, 0, 0, 0, 0, 0],
      "0,0,0,0,0,0,0",
    ]) {
      await expectRefused("correction", { inference_id: id, corrected_action });
    }
    for (const corrected_chunk of [
      [],
      [[0, 0, 0]],
      [seven, [0, 0, 0, 0, 0, 0, 0, 0]],
      [[0, 0, 0, 0, 0, 0, 99]],
      seven,
    ]) {
      await expectRefused("correction", { inference_id: id, corrected_chunk });
    }
    await expectRefused("correction", { inference_id: id, corrected_chunk: Array.from({ length: 257 }, () => seven) });
    for (const raw of ["1e309", "-1e309", "NaN", "Infinity", "1e400"]) {
      const res = await postRaw(
        t,
        "correction",
        xKey(key),
        `{"inference_id":"${id}","corrected_action":[0,0,0,0,0,0,${raw}]}`,
      );
      expect([400, 422], `${raw}: ${res.body}`).toContain(res.statusCode);
    }
    // The bounds themselves are fine.
    const edge = await post(t, "correction", xKey(key), {
      inference_id: id,
      corrected_action: [10, -10, 0, 0, 0, 0, 1],
    });
    expect(edge.statusCode, edge.body).toBe(201);
  });

  it("nothing refused was stored", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/feedback?limit=200", headers: xKey(key) });
    const data = (res.json() as { data: Json[] }).data;
    // Only the three accepted above: the 2000-character comment, the control characters, the edge correction.
    expect(data).toHaveLength(3);
  });

  it("list and stats refuse bad query parameters", async () => {
    const get = (url: string) => t.app.inject({ method: "GET", url, headers: xKey(key) });
    for (const q of [
      "limit=0",
      "limit=201",
      "limit=abc",
      "type=nope",
      "inference_id=zzz",
      "from=yesterday",
      "from=0000-01-01T00:00:00Z",
      "cursor=garbage",
      "robot_id=has%20space",
      "bogus=1",
      "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ]) {
      expectProblem(await get(`/v1/feedback?${q}`), 400, "invalid_request");
    }
    for (const q of [
      "from=nope",
      "to=2026-13-01T00:00:00Z",
      "bogus=1",
      "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ]) {
      expectProblem(await get(`/v1/feedback/stats?${q}`), 400, "invalid_request");
    }
  });
});
