import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInferenceApp, flushLogs, type InferenceTestContext, jpeg, newKey } from "./helpers.ts";

let t: InferenceTestContext;
let img: string;
beforeAll(async () => {
  t = await buildInferenceApp();
  img = (await jpeg(64, 64, 3)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const infer = (key: string, robot_id: string, extra: Record<string, unknown> = {}) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "pick", robot_id, unnorm_key: "bridge_orig", ...extra },
  });

const get = (key: string, url: string) => t.app.inject({ method: "GET", url, headers: { "x-api-key": key } });

type Page = {
  data: { id: string; created_at: string; robot_id: string; model: string; status: string }[];
  next_cursor: string | null;
};

describe("inference history", () => {
  it("pages through 25 rows with an opaque cursor, newest first, no duplicates or gaps", async () => {
    const c = await newKey(t);
    for (let i = 0; i < 25; i++) {
      expect((await infer(c.key, i % 2 === 0 ? "arm-even" : "arm-odd")).statusCode).toBe(200);
      if (i % 5 === 0) t.clock.advance(1_000); // several rows share a created_at: the id breaks ties
    }
    await flushLogs(t.app);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(c.key, `/v1/inference/history?limit=10${cursor === null ? "" : `&cursor=${cursor}`}`);
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as Page;
      seen.push(...page.data.map((r) => r.id));
      for (let i = 1; i < page.data.length; i++) {
        expect((page.data[i - 1]?.created_at ?? "") >= (page.data[i]?.created_at ?? "")).toBe(true);
      }
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    const all = (await get(c.key, "/v1/inference/history?limit=200")).json() as Page;
    expect(all.data.map((r) => r.id)).toEqual(seen);
    expect(all.next_cursor).toBeNull();
  });

  it("filters by robot_id, model, status, source and time range", async () => {
    const c = await newKey(t);
    const start = new Date(t.clock.now()).toISOString();
    await infer(c.key, "r1");
    await infer(c.key, "r1", { model: "demo-vla-tiny", unnorm_key: undefined });
    t.clock.advance(5_000);
    const mid = new Date(t.clock.now()).toISOString();
    await infer(c.key, "r2");
    await infer(c.key, "r2", { model: "no-such-model" });
    await flushLogs(t.app);
    const q = async (query: string) =>
      ((await get(c.key, `/v1/inference/history?${query}`)).json() as Page).data.map((r) => r.robot_id).sort();
    expect(await q("robot_id=r1")).toEqual(["r1", "r1"]);
    expect(await q("model=demo-vla-tiny")).toEqual(["r1"]);
    expect(await q("status=error")).toEqual(["r2"]);
    expect(await q("status=ok&robot_id=r2")).toEqual(["r2"]);
    expect(await q("source=act")).toEqual([]);
    expect(await q("source=rest")).toHaveLength(4);
    expect(await q(`from=${encodeURIComponent(mid)}`)).toEqual(["r2", "r2"]);
    expect(await q(`from=${encodeURIComponent(start)}&to=${encodeURIComponent(mid)}`)).toEqual(["r1", "r1"]);
  });

  it("rejects bad parameters", async () => {
    expect((await get(t.key, "/v1/inference/history?limit=201")).statusCode).toBe(400);
    expect((await get(t.key, "/v1/inference/history?limit=0")).statusCode).toBe(400);
    const bad = await get(t.key, "/v1/inference/history?cursor=garbage");
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe("invalid_request");
    expect((await get(t.key, "/v1/inference/history?status=maybe")).statusCode).toBe(400);
    expect((await get(t.key, "/v1/inference/not-a-uuid")).statusCode).toBe(400);
    expect((await t.app.inject({ method: "GET", url: "/v1/inference/history" })).statusCode).toBe(401);
  });

  it("is tenant-isolated: another customer's inference is 404 not_found and absent from history", async () => {
    const a = await newKey(t);
    const b = await newKey(t);
    const res = await infer(a.key, "shared-name");
    const id = res.json().inference_id as string;
    await flushLogs(t.app);
    expect((await get(a.key, `/v1/inference/${id}`)).statusCode).toBe(200);
    const other = await get(b.key, `/v1/inference/${id}`);
    expect(other.statusCode).toBe(404);
    expect(other.json().code).toBe("not_found");
    expect(((await get(b.key, "/v1/inference/history?robot_id=shared-name")).json() as Page).data).toHaveLength(0);
    expect((await get(b.key, "/v1/inference/00000000-0000-4000-8000-000000000000")).statusCode).toBe(404);
  });

  it("has every row of a burst of 50 concurrent requests after the flush", async () => {
    const c = await newKey(t);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => infer(c.key, `burst-${i % 5}`)));
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    const ids = new Set(results.map((r) => r.json().inference_id as string));
    await flushLogs(t.app);
    const page = (await get(c.key, "/v1/inference/history?limit=200")).json() as Page;
    expect(new Set(page.data.map((r) => r.id))).toEqual(ids);
  });
});
