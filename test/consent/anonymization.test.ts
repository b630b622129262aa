import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packMsgpackNumpy } from "../../src/modules/inference/msgpack-numpy.ts";
import { KEY_PSEUDONYM, Pseudonymizer, ROBOT_PSEUDONYM } from "../../src/platform/pseudonym.ts";
import { analytics, settle, snapshot } from "../analytics/helpers.ts";
import { flushLogs, newKey, pattern } from "../inference/helpers.ts";
import { buildStreamApp, Client, jpeg, type StreamTestContext, started } from "../streaming/helpers.ts";
import { installConsentSessions, owner, SUPERUSER_ID, superuser } from "./helpers.ts";

/**
 * Anonymization none / partial / full (docs/privacy.md, "Anonymization"): one inference per entry
 * point (REST with a key and with a session, a failed REST, /act, WS /v1/stream, WS /v1/openpi),
 * the rollup job, then exactly what inference_logs and the rollup tables hold.
 */
let t: StreamTestContext;
let img: Buffer;
let pseudonyms: Pseudonymizer;
beforeAll(async () => {
  t = await buildStreamApp({ ANALYTICS_ROLLUPS: "false" });
  installConsentSessions(t.app);
  img = await jpeg(64, 64, 3);
  pseudonyms = new Pseudonymizer(t.app.platform.config.auth.secretKey);
});
afterAll(async () => {
  await t?.close();
});

type Row = Record<string, unknown>;
const rows = async (query: ReturnType<typeof sql>) =>
  (await t.database.db.execute(query)) as unknown as { rows: Row[] };

async function drive(key: string, customerId: string, instruction: string): Promise<string> {
  const rest = (headers: Record<string, string>, model?: string) =>
    t.app.inject({
      method: "POST",
      url: "/v1/inference",
      headers,
      payload: {
        image: img.toString("base64"),
        instruction,
        robot_id: "arm-c",
        unnorm_key: "bridge_orig",
        ...(model === undefined ? {} : { model }),
      },
    });
  const first = await rest({ "x-api-key": key });
  expect(first.statusCode).toBe(200);
  expect((await rest(superuser(customerId))).statusCode).toBe(200); // a session: user_id
  expect((await rest({ "x-api-key": key }, "no-such-model")).statusCode).toBe(404);
  const act = await t.app.inject({
    method: "POST",
    url: "/act",
    headers: { "x-api-key": key, "content-type": "application/json", "x-robot-id": "arm-c" },
    payload: JSON.stringify({
      image: { __numpy__: pattern(64, 64, 2).toString("base64"), dtype: "|u1", shape: [64, 64, 3] },
      instruction,
      unnorm_key: "bridge_orig",
    }),
  });
  expect(act.statusCode, act.body).toBe(200);
  const { c } = await started(t, { instruction, robot_id: "arm-c" }, key);
  c.json({ type: "frame", seq: 1, image: img.toString("base64") });
  await c.type("action");
  c.json({ type: "stop" });
  await c.closed;
  const pi = new Client(`${t.baseUrl}/v1/openpi?unnorm_key=bridge_orig&robot_id=arm-c`, {
    authorization: `Api-Key ${key}`,
  });
  await pi.opened();
  await pi.next(() => pi.raw.length >= 1); // metadata
  pi.ws.send(
    packMsgpackNumpy({
      "observation/image": { data: pattern(224, 224, 4), shape: [224, 224, 3] },
      prompt: instruction,
    }),
  );
  await pi.next(() => pi.raw.length >= 2);
  pi.close();
  await pi.closed;
  return first.json().inference_id as string;
}

const LEVELS = ["none", "partial", "full"] as const;

describe.each(LEVELS)("anonymization %s", (level) => {
  it("stores exactly what the level allows, in inference_logs and in the rollups", async () => {
    const { customerId, key, keyId } = await newKey(t);
    const put = await t.app.inject({
      method: "PUT",
      url: "/v1/consent",
      headers: owner(customerId),
      payload: { tier: "research", anonymization: level, policy_version: "p" },
    });
    expect(put.statusCode, put.body).toBe(200);
    const instruction = `fetch the secret parcel (${level})`;
    const inferenceId = await drive(key, customerId, instruction);
    await flushLogs(t.app);
    await settle(t.app, t.database);

    const robot = level === "none" ? "arm-c" : pseudonyms.robot(customerId, "arm-c");
    const apiKey = level === "none" ? keyId : pseudonyms.apiKey(customerId, keyId);
    expect(robot).toMatch(level === "none" ? /^arm-c$/ : ROBOT_PSEUDONYM);
    expect(apiKey).toMatch(level === "none" ? /./ : KEY_PSEUDONYM);

    // inference_logs: the log row keeps the raw ids under none and partial (the customer's own
    // history), pseudonyms and no content under full.
    const logs = (await rows(sql`select * from inference_logs where customer_id = ${customerId}::uuid`)).rows;
    expect(logs.map((r) => `${r.source}/${r.status}`).sort()).toEqual(
      ["act/ok", "openpi/ok", "rest/error", "rest/ok", "rest/ok", "stream/ok"].sort(),
    );
    const full = level === "full";
    for (const r of logs) {
      const what = JSON.stringify(r);
      expect(r.robot_id, what).toBe(full ? pseudonyms.robot(customerId, "arm-c") : "arm-c");
      const session = r.api_key_id === null;
      expect(r.user_id, what).toBe(session && !full ? SUPERUSER_ID : null);
      if (!session) expect(r.api_key_id, what).toBe(full ? apiKey : keyId);
      expect(r.instruction, what).toBe(level === "none" ? instruction : null);
      for (const c of ["instruction_sha256", "instruction_key"]) {
        if (full) expect(r[c], what).toBeNull();
        else expect(r[c], what).toMatch(/^[0-9a-f]{64}$/);
      }
      if (r.status === "ok") {
        if (full) expect([r.image_sha256, r.action, r.action_chunk], what).toEqual([null, null, null]);
        else expect(r.image_sha256, what).toMatch(/^[0-9a-f]{64}$/);
        if (!full) expect(r.action, what).not.toBeNull();
      }
      // What every level keeps: the counters' inputs.
      expect(r.model, what).toEqual(expect.any(String));
      expect(r.total_ms, what).toEqual(expect.any(Number));
      if (full) {
        expect(what).not.toContain(keyId);
        expect(what).not.toContain("arm-c");
        expect(what).not.toContain(SUPERUSER_ID);
      }
    }
    expect(logs.filter((r) => r.api_key_id === null)).toHaveLength(1);

    // Rollups: keys pseudonymized under partial and full, the counts whatever the level.
    const daily = (
      await rows(sql`select robot_id, requests::int as requests from robot_performance_metrics
        where customer_id = ${customerId}::uuid`)
    ).rows;
    expect([...new Set(daily.map((r) => r.robot_id))]).toEqual([robot]); // one row per model
    expect(daily.reduce((n, r) => n + Number(r.requests), 0)).toBe(6);
    const hourly = (
      await rows(sql`select api_key_id, requests::int as requests from usage_hourly_metrics
        where customer_id = ${customerId}::uuid`)
    ).rows;
    expect(new Set(hourly.map((r) => r.api_key_id))).toEqual(new Set([apiKey, "00000000-0000-0000-0000-000000000000"]));
    expect(hourly.reduce((n, r) => n + Number(r.requests), 0)).toBe(6);
    const instr = (
      await rows(sql`select instruction, instruction_key from instruction_analytics
        where customer_id = ${customerId}::uuid`)
    ).rows;
    if (full) expect(instr).toEqual([]);
    else
      expect(instr).toEqual([
        { instruction: level === "none" ? instruction : null, instruction_key: expect.any(String) },
      ]);
    if (level !== "none") {
      const all = JSON.stringify([daily, hourly, instr]);
      expect(all).not.toContain(keyId);
      expect(all).not.toContain("arm-c");
      expect(all).not.toContain(instruction);
    }

    // Feedback: a correction needs the action, which `full` does not keep; a rating needs nothing.
    const feedback = (type: string, body: Record<string, unknown>) =>
      t.app.inject({
        method: "POST",
        url: `/v1/feedback/${type}`,
        headers: { "x-api-key": key },
        payload: { inference_id: inferenceId, ...body },
      });
    const correction = await feedback("correction", { corrected_action: [0, 0, 0, 0, 0, 0, 0] });
    if (full) {
      expect(correction.statusCode, correction.body).toBe(409);
      expect(correction.json()).toMatchObject({ code: "inference_without_action", inference_id: inferenceId });
      expect(correction.json().detail).toContain("anonymization full");
    } else expect(correction.statusCode, correction.body).toBe(201);
    const rating = await feedback("success", { rating: 3 });
    expect(rating.statusCode, rating.body).toBe(201);

    // The usage route shows what the rollups hold: the pseudonym.
    const usage = await t.app.inject({
      method: "GET",
      url: "/v1/analytics/usage?group_by=robot",
      headers: { "x-api-key": key },
    });
    expect(usage.statusCode, usage.body).toBe(200);
    expect(usage.json().series.map((s: { group: string }) => s.group)).toEqual([robot]);

    // A rebuild recomputes the same pseudonyms (they follow the consent in effect at each row's created_at).
    const before = await snapshot(t.database);
    const { job } = analytics(t.app);
    const now = t.clock.now();
    const from = new Date(Math.floor(now / 86_400_000) * 86_400_000 - 86_400_000);
    expect((await job.rebuild(from, new Date(from.getTime() + 3 * 86_400_000))).ran).toBe(true);
    expect(await snapshot(t.database)).toEqual(before);
  });
});

describe("a change of level", () => {
  it("rows keep the level of the consent in effect when they were written", async () => {
    const { customerId, key } = await newKey(t);
    const send = async () =>
      expect(
        (
          await t.app.inject({
            method: "POST",
            url: "/v1/inference",
            headers: { "x-api-key": key },
            payload: { image: img.toString("base64"), instruction: "x", robot_id: "arm-d", unnorm_key: "bridge_orig" },
          })
        ).statusCode,
      ).toBe(200);
    await send(); // default consent: anonymization none
    t.clock.advance(1000);
    const put = await t.app.inject({
      method: "PUT",
      url: "/v1/consent",
      headers: owner(customerId),
      payload: { tier: "basic", anonymization: "partial", policy_version: "p" },
    });
    expect(put.statusCode, put.body).toBe(200);
    t.clock.advance(1000);
    await send();
    await flushLogs(t.app);
    await settle(t.app, t.database);
    const daily = (
      await rows(sql`select robot_id, requests::int as requests from robot_performance_metrics
        where customer_id = ${customerId}::uuid order by robot_id`)
    ).rows;
    expect(daily).toEqual(
      [
        { robot_id: "arm-d", requests: 1 },
        { robot_id: pseudonyms.robot(customerId, "arm-d"), requests: 1 },
      ].sort((a, b) => String(a.robot_id).localeCompare(String(b.robot_id))),
    );
  });
});
