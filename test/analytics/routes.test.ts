import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { safetyIncidents } from "../../src/platform/db/schema/index.ts";
import { owner, xKey } from "../helpers/limits.ts";
import { buildInferenceApp, type InferenceTestContext, newKey } from "../inference/helpers.ts";
import { analytics, insertLogs, randomEntry, rng, settle } from "./helpers.ts";

const DAY = 86_400_000;
const D0 = Date.UTC(2026, 10, 1);
const range = (a: number, b: number) => `from=${new Date(a).toISOString()}&to=${new Date(b).toISOString()}`;
const ROUTES = ["usage", "safety", "robots", "instructions"] as const;

let t: InferenceTestContext;
let a: { customerId: string; key: string; keyId: string };
let b: { customerId: string; key: string; keyId: string };
beforeAll(async () => {
  t = await buildInferenceApp({ ANALYTICS_ROLLUPS: "false" });
  a = await newKey(t);
  b = await newKey(t);
  const r = rng(3);
  await insertLogs(
    t.database,
    Array.from({ length: 400 }, () => randomEntry(r, a.customerId, D0 + Math.floor(r() * 2 * DAY), a.keyId)),
  );
  await settle(t.app, t.database);
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string, headers: Record<string, string> = owner(a.customerId)) =>
  t.app.inject({ method: "GET", url, headers });

describe("/v1/analytics", () => {
  it("requires authentication on every route", async () => {
    for (const r of ROUTES) expect((await get(`/v1/analytics/${r}`, {})).statusCode).toBe(401);
  });

  it("answers an API key of the customer like its owner", async () => {
    const q = `/v1/analytics/usage?${range(D0, D0 + 2 * DAY)}&group_by=api_key`;
    const byKey = (await get(q, xKey(a.key))).json();
    expect(byKey).toEqual((await get(q)).json());
    expect(byKey.series.map((s: { group: string }) => s.group)).toEqual([a.keyId]);
    expect(byKey.totals.requests).toBe(400);
  });

  it("isolates tenants: another customer sees none of it", async () => {
    for (const r of ROUTES) {
      const res = await get(`/v1/analytics/${r}?${range(D0, D0 + 2 * DAY)}`, owner(b.customerId));
      expect(res.statusCode).toBe(200);
      const body = res.json();
      if (r === "usage") expect(body.totals.requests).toBe(0);
      if (r === "usage") expect(body.series).toEqual([]);
      if (r === "robots" || r === "instructions") expect(body.data).toEqual([]);
      if (r === "safety") expect(body.verdicts).toEqual({ pass: 0, clamped: 0, rejected: 0, emergency_stop: 0 });
    }
    const own = (await get(`/v1/analytics/robots?${range(D0, D0 + 2 * DAY)}`, xKey(b.key))).json();
    expect(own.total).toBe(0);
  });

  it("answers empty ranges with empty data", async () => {
    const q = range(D0 + 100 * DAY, D0 + 101 * DAY);
    const usage = (await get(`/v1/analytics/usage?${q}&granularity=hour`)).json();
    expect(usage.series).toEqual([]);
    expect(usage.totals).toEqual({
      requests: 0,
      errors: 0,
      success_rate: null,
      p50_ms: null,
      p95_ms: null,
      p99_ms: null,
    });
    expect((await get(`/v1/analytics/instructions?${q}`)).json().data).toEqual([]);
    expect((await get(`/v1/analytics/robots?${q}`)).json()).toMatchObject({ total: 0, data: [], next_offset: null });
    expect((await get(`/v1/analytics/safety?${q}`)).json()).toMatchObject({
      incidents: 0,
      daily: [],
      rising_robots: [],
    });
  });

  it("refuses bad input with a 400 problem naming the parameter", async () => {
    const cases: [string, string][] = [
      [`/v1/analytics/usage?${range(D0 + DAY, D0)}`, "/from"],
      [`/v1/analytics/usage?${range(D0, D0 + 401 * DAY)}`, "/to"],
      [`/v1/analytics/usage?${range(D0, D0 + 32 * DAY)}&granularity=hour`, "/to"],
      [`/v1/analytics/usage?granularity=minute`, "granularity"],
      [`/v1/analytics/usage?group_by=robot&granularity=hour`, "/group_by"],
      [`/v1/analytics/usage?from=0000-01-01T00:00:00Z&to=0000-01-02T00:00:00Z`, "/from"],
      [`/v1/analytics/usage?from=yesterday`, "from"],
      [`/v1/analytics/robots?sort=owner`, "sort"],
      [`/v1/analytics/robots?limit=0`, "limit"],
      [`/v1/analytics/instructions?limit=501`, "limit"],
      [`/v1/analytics/instructions?sort=latency`, "sort"],
      [`/v1/analytics/safety?${range(D0, D0 + 500 * DAY)}`, "/to"],
      [`/v1/analytics/safety?robot=x`, "robot"],
    ];
    for (const [url, path] of cases) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers["content-type"]).toContain("application/problem+json");
      expect(JSON.stringify(res.json().errors ?? res.json()), url).toContain(path);
    }
    // The caps themselves are allowed.
    expect((await get(`/v1/analytics/usage?${range(D0, D0 + 400 * DAY)}`)).statusCode).toBe(200);
    expect((await get(`/v1/analytics/usage?${range(D0, D0 + 31 * DAY)}&granularity=hour`)).statusCode).toBe(200);
  });

  it("groups usage by model, robot and source, daily and hourly, adding up to the totals", async () => {
    for (const q of ["group_by=model", "group_by=robot", "group_by=source", "granularity=hour&group_by=model", ""]) {
      const body = (await get(`/v1/analytics/usage?${range(D0, D0 + 2 * DAY)}&${q}`)).json();
      const sum = body.series.reduce(
        (n: number, s: { points: { requests: number }[] }) => n + s.points.reduce((m, p) => m + p.requests, 0),
        0,
      );
      expect(sum, q).toBe(400);
      expect(body.totals.requests).toBe(400);
    }
    const hourly = (await get(`/v1/analytics/usage?${range(D0, D0 + 2 * DAY)}&granularity=hour`)).json();
    expect(hourly.series[0].points.length).toBeGreaterThan(24);
  });

  it("sorts and paginates robots", async () => {
    const all = (await get(`/v1/analytics/robots?${range(D0, D0 + 2 * DAY)}&sort=robot_id&order=asc`)).json();
    expect(all.data.map((r: { robot_id: string }) => r.robot_id)).toEqual(["arm-1", "arm-2"]);
    const p1 = (await get(`/v1/analytics/robots?${range(D0, D0 + 2 * DAY)}&sort=requests&limit=1`)).json();
    const p2 = (await get(`/v1/analytics/robots?${range(D0, D0 + 2 * DAY)}&sort=requests&limit=1&offset=1`)).json();
    expect(p1.next_offset).toBe(1);
    expect(p2.next_offset).toBeNull();
    expect(p1.data[0].requests).toBeGreaterThanOrEqual(p2.data[0].requests);
    expect(p1.data[0].requests + p2.data[0].requests).toBeLessThanOrEqual(400);
  });

  it("answers Accept: text/csv with the same data on every route", async () => {
    for (const r of ROUTES) {
      const res = await get(`/v1/analytics/${r}?${range(D0, D0 + 2 * DAY)}`, {
        ...owner(a.customerId),
        accept: "text/csv",
      });
      expect(res.statusCode, r).toBe(200);
      expect(res.headers["content-type"]).toContain("text/csv");
      expect(res.body.split("\r\n")[0]).toMatch(/^[a-z0-9_]+(,[a-z0-9_]+)+$/);
    }
    const csv = (
      await get(`/v1/analytics/usage?${range(D0, D0 + 2 * DAY)}&group_by=model`, {
        ...owner(a.customerId),
        accept: "text/csv",
      })
    ).body;
    const rows = csv.trim().split("\r\n").slice(1);
    const json = (await get(`/v1/analytics/usage?${range(D0, D0 + 2 * DAY)}&group_by=model`)).json();
    expect(rows.length).toBe(json.series.reduce((n: number, s: { points: unknown[] }) => n + s.points.length, 0));
    expect(rows.reduce((n, line) => n + Number(line.split(",")[2]), 0)).toBe(400);
    const ins = (
      await get(`/v1/analytics/instructions?${range(D0, D0 + 2 * DAY)}`, { ...owner(a.customerId), accept: "text/csv" })
    ).body;
    expect(ins).toContain("the   cup");
  });

  it("summarizes safety incidents: types, severities, daily trend, top rules, rising robots", async () => {
    const c = await newKey(t);
    const r = rng(21);
    // arm-1 steady traffic over four days; its incidents all in the second half.
    await insertLogs(
      t.database,
      Array.from({ length: 200 }, (_, i) => ({
        ...randomEntry(r, c.customerId, D0 + (i % 4) * DAY + 1000),
        robotId: "arm-1",
      })),
    );
    await settle(t.app, t.database);
    const at = (d: number) => new Date(D0 + d * DAY + 3_600_000);
    await t.database.db.insert(safetyIncidents).values([
      {
        customerId: c.customerId,
        robotId: "arm-1",
        violationType: "workspace",
        severity: "high",
        actionTaken: "clamped",
        at: at(2),
      },
      {
        customerId: c.customerId,
        robotId: "arm-1",
        violationType: "workspace",
        severity: "high",
        actionTaken: "clamped",
        at: at(3),
      },
      {
        customerId: c.customerId,
        robotId: "arm-1",
        violationType: "linear_velocity",
        severity: "critical",
        actionTaken: "emergency_stop",
        at: at(3),
      },
      // Outside the range.
      {
        customerId: c.customerId,
        robotId: "arm-1",
        violationType: "workspace",
        severity: "low",
        actionTaken: "none",
        at: at(9),
      },
    ]);
    const body = (await get(`/v1/analytics/safety?${range(D0, D0 + 4 * DAY)}`, owner(c.customerId))).json();
    expect(body.incidents).toBe(3);
    expect(body.by_type).toEqual([
      { key: "workspace", count: 2 },
      { key: "linear_velocity", count: 1 },
    ]);
    expect(body.actions).toEqual([
      { key: "clamped", count: 2 },
      { key: "emergency_stop", count: 1 },
    ]);
    expect(body.daily).toEqual([
      { day: "2026-11-03", incidents: 1 },
      { day: "2026-11-04", incidents: 2 },
    ]);
    expect(body.top_rules[0]).toEqual({ violation_type: "workspace", severity: "high", count: 2 });
    expect(body.rising_robots.map((x: { robot_id: string }) => x.robot_id)).toEqual(["arm-1"]);
    expect(
      body.verdicts.pass + body.verdicts.clamped + body.verdicts.rejected + body.verdicts.emergency_stop,
    ).toBeGreaterThan(0);
  });

  it("removes the customer's rollups with the customer (deletion hook)", async () => {
    const c = await newKey(t);
    const r = rng(8);
    await insertLogs(
      t.database,
      Array.from({ length: 20 }, () => randomEntry(r, c.customerId, D0 + 1000)),
    );
    await settle(t.app, t.database);
    const counts = await t.database.db.transaction((tx) => analytics(t.app).repo.deleteCustomer(tx, c.customerId));
    expect(counts.robot_performance_metrics).toBeGreaterThan(0);
    expect((await get(`/v1/analytics/usage?${range(D0, D0 + DAY)}`, owner(c.customerId))).json().totals.requests).toBe(
      0,
    );
  });
});
