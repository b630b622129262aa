import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateSync } from "../../src/modules/safety/evaluator.ts";
import { type IncidentRow, incidentsFromResult } from "../../src/modules/safety/incidents.ts";
import { GLOBAL_DEFAULT_PROFILE } from "../../src/modules/safety/profile.ts";
import { InvalidCursorError, SafetyRepo } from "../../src/modules/safety/safety.repo.ts";
import { type IsolatedDatabase, isolatedDatabase } from "../helpers/app.ts";
import { seedCustomer } from "../helpers/limits.ts";

let iso: IsolatedDatabase;
let repo: SafetyRepo;
let c1: string;
let c2: string;

beforeAll(async () => {
  iso = await isolatedDatabase();
  repo = new SafetyRepo(iso.database.db);
  c1 = await seedCustomer(iso.database);
  c2 = await seedCustomer(iso.database);
});
afterAll(async () => {
  await iso?.drop();
});

const T0 = new Date("2026-11-01T00:00:00Z");
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);
const incident = (over: Partial<IncidentRow> & { customerId: string }): IncidentRow => ({
  robotId: "arm-1",
  inferenceId: "inf-1",
  violationType: "linear_velocity",
  severity: "low",
  actionTaken: "clamped",
  measured: 0.55,
  limit: 0.5,
  step: 0,
  message: "linear velocity 0.55 m/s exceeds 0.5 m/s",
  at: T0,
  ...over,
});

describe("robot profiles", () => {
  it("upsert, get, update, delete, isolated per customer", async () => {
    const created = await repo.upsertProfile(c1, "arm-1", { control_hz: 10 });
    expect(created.profile).toEqual({ control_hz: 10 });
    await repo.upsertProfile(c1, "arm-1", { control_hz: 15 });
    expect(await repo.getProfile(c1, "arm-1")).toEqual({ control_hz: 15 });
    expect(await repo.getProfile(c2, "arm-1")).toBeUndefined();
    expect(await repo.deleteProfile(c2, "arm-1")).toBe(false);
    expect(await repo.deleteProfile(c1, "arm-1")).toBe(true);
    expect(await repo.deleteProfile(c1, "arm-1")).toBe(false);
    expect(await repo.getProfile(c1, "arm-1")).toBeUndefined();
    expect((await repo.getRobot(c1, "arm-1"))?.robotId).toBe("arm-1"); // still listed
  });
  it("touch last_seen creates robots, only moves forward, and lists per customer", async () => {
    await repo.touchLastSeen([
      { customerId: c1, robotId: "arm-2", at: at(10) },
      { customerId: c2, robotId: "other", at: at(10) },
    ]);
    await repo.touchLastSeen([{ customerId: c1, robotId: "arm-2", at: at(5) }]);
    expect((await repo.getRobot(c1, "arm-2"))?.lastSeenAt).toEqual(at(10));
    await repo.touchLastSeen([{ customerId: c1, robotId: "arm-2", at: at(20) }]);
    expect((await repo.getRobot(c1, "arm-2"))?.lastSeenAt).toEqual(at(20));
    await repo.upsertProfile(c1, "arm-2", { control_hz: 5 });
    expect((await repo.getRobot(c1, "arm-2"))?.lastSeenAt).toEqual(at(20)); // upsert keeps activity
    expect((await repo.listRobots(c1)).map((r) => r.robotId)).toEqual(["arm-1", "arm-2"]);
    expect((await repo.listRobots(c2)).map((r) => r.robotId)).toEqual(["other"]);
  });
});

describe("incidents", () => {
  beforeAll(async () => {
    const rows: IncidentRow[] = [];
    for (let i = 0; i < 25; i++) {
      rows.push(
        incident({
          customerId: c1,
          robotId: i % 2 === 0 ? "arm-1" : "arm-2",
          severity: i % 5 === 0 ? "critical" : "low",
          violationType: i % 3 === 0 ? "workspace" : "linear_velocity",
          at: at(i % 10), // several rows share a timestamp: the cursor must still be exact
        }),
      );
    }
    rows.push(incident({ customerId: c2, robotId: "other" }));
    await repo.insertIncidents(rows);
    await repo.insertIncidents([]);
  });

  it("lists newest first with cursor pagination that visits every row once", async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await repo.listIncidents(c1, {}, { limit: 7, cursor });
      seen.push(...page.items.map((i) => i.id));
      for (let k = 1; k < page.items.length; k++) {
        expect((page.items[k - 1]?.at.getTime() ?? 0) >= (page.items[k]?.at.getTime() ?? 0)).toBe(true);
      }
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 10);
    expect(pages).toBe(4);
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
  });
  it("filters by robot, severity, type and time range", async () => {
    const byRobot = await repo.listIncidents(c1, { robotId: "arm-2" }, { limit: 100 });
    expect(byRobot.items).toHaveLength(12);
    expect(byRobot.items.every((i) => i.robotId === "arm-2")).toBe(true);
    const critical = await repo.listIncidents(c1, { severity: ["critical"] }, { limit: 100 });
    expect(critical.items).toHaveLength(5);
    const ws = await repo.listIncidents(c1, { type: ["workspace"], severity: ["critical"] }, { limit: 100 });
    expect(ws.items).toHaveLength(2); // i = 0, 15
    const window = await repo.listIncidents(c1, { from: at(2), to: at(4) }, { limit: 100 });
    expect(window.items.map((i) => i.at.getTime() - T0.getTime()).sort()).toEqual(
      Array(6)
        .fill(0)
        .map((_, k) => (k < 3 ? 2 : 3) * 60_000),
    );
  });
  it("is isolated per customer and keeps measured vs limit", async () => {
    const other = await repo.listIncidents(c2);
    expect(other.items).toHaveLength(1);
    expect(other.items[0]).toMatchObject({ robotId: "other", measured: 0.55, limit: 0.5, actionTaken: "clamped" });
  });
  it("refuses a malformed cursor", async () => {
    await expect(repo.listIncidents(c1, {}, { cursor: "bm9wZQ" })).rejects.toBeInstanceOf(InvalidCursorError);
  });
  it("summarises counts by type, severity and robot over a period", async () => {
    const s = await repo.summary(c1);
    expect(s.total).toBe(25);
    expect(s.bySeverity).toEqual({ critical: 5, low: 20 });
    expect(s.byType).toEqual({ workspace: 9, linear_velocity: 16 });
    expect(s.byRobot).toEqual({ "arm-1": 13, "arm-2": 12 });
    const part = await repo.summary(c1, { from: at(0), to: at(1) });
    expect(part.total).toBe(3);
    expect((await repo.summary(c2)).total).toBe(1);
  });
  it("rows built from an evaluation result round-trip", async () => {
    const result = evaluateSync({ action: [0.2, 0, 0, 0, 0, 0, 1.5], profile: GLOBAL_DEFAULT_PROFILE });
    const rows = incidentsFromResult(result, { customerId: c2, robotId: "eval", inferenceId: "inf-9" }, at(100));
    expect(rows.map((r) => r.violationType).sort()).toEqual(["gripper", "linear_velocity"]);
    await repo.insertIncidents(rows);
    const page = await repo.listIncidents(c2, { robotId: "eval" });
    expect(page.items).toHaveLength(2);
    // 1.0 m/s is +100 % (high), gripper 1.5 is 50 % of the range outside it (medium): rejected
    expect(result.action_taken).toBe("rejected");
    expect(page.items.map((i) => [i.violationType, i.severity, i.actionTaken, i.inferenceId]).sort()).toEqual([
      ["gripper", "medium", "rejected", "inf-9"],
      ["linear_velocity", "high", "rejected", "inf-9"],
    ]);
  });
  it("deleteCustomer removes only that customer's rows", async () => {
    const counts = await repo.deleteCustomer(iso.database.db, c2);
    expect(counts.safety_incidents).toBe(3);
    expect(counts.robot_profiles).toBe(1);
    expect((await repo.summary(c1)).total).toBe(25);
  });
});
