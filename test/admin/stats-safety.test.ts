import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { safetyWriters } from "../../src/modules/safety/safety.module.ts";
import { auditLog } from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { jpeg } from "../inference/helpers.ts";

let t: TestContext;
let root: Session;
let img: string;
let one: Customer;
let other: Customer;

interface Customer {
  readonly session: Session;
  readonly customerId: string;
  readonly key: string;
}

async function customer(tag: string): Promise<Customer> {
  const session = await signUp(t, tag);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: bearer(session.access),
    payload: { name: "robot", scopes: ["inference"] },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { session, customerId: session.customerId, key: (res.json() as { key: string }).key };
}

/** A limit the mock's actions always exceed by far (critical): the robot is emergency-stopped. */
const STOP = {
  max_linear_velocity: 0.0001,
  policy: { low: "emergency_stop", medium: "emergency_stop", high: "emergency_stop", critical: "emergency_stop" },
};

async function stopRobot(c: Customer, robotId: string) {
  const put = await t.app.inject({
    method: "PUT",
    url: `/v1/robots/${robotId}/safety-profile`,
    headers: bearer(c.session.access),
    payload: STOP,
  });
  expect(put.statusCode, put.body).toBeLessThan(300);
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": c.key },
    payload: { image: img, instruction: "pick", robot_id: robotId, unnorm_key: "bridge_orig" },
  });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json().safety.status).toBe("emergency_stop");
}

beforeAll(async () => {
  t = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
  img = (await jpeg(224, 224, 3)).toString("base64");
  root = await signUpSuperuser(t);
  one = await customer("one");
  other = await customer("other");
  await stopRobot(one, "arm-a");
  await stopRobot(other, "arm-b");
  await safetyWriters.get(t.app.platform)?.incidents.flush();
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string) => t.app.inject({ method: "GET", url, headers: bearer(root.access) });
type Incident = { customer_id: string; robot_id: string; severity: string; id: string };

describe("GET /admin/safety/incidents", () => {
  it("operators only", async () => {
    const plain = await signUp(t, "plain");
    await expectSuperuserOnly(t, plain, [
      { method: "GET", url: "/admin/safety/incidents" },
      { method: "GET", url: "/admin/safety/stops" },
    ]);
  });

  it("lists every customer's incidents newest first, each with its customer_id", async () => {
    const res = await get("/admin/safety/incidents");
    expect(res.statusCode, res.body).toBe(200);
    const data = res.json().data as Incident[];
    const customers = new Set(data.map((i) => i.customer_id));
    expect(customers).toEqual(new Set([one.customerId, other.customerId]));
    expect(data.find((i) => i.customer_id === other.customerId)?.robot_id).toBe("arm-b");
  });

  it("filters by customer_id, robot_id and severity, and pages with the cursor", async () => {
    const mine = (await get(`/admin/safety/incidents?customer_id=${other.customerId}`)).json().data as Incident[];
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((i) => i.customer_id === other.customerId)).toBe(true);
    const byRobot = (await get("/admin/safety/incidents?robot_id=arm-a")).json().data as Incident[];
    expect(byRobot.every((i) => i.customer_id === one.customerId)).toBe(true);
    expect((await get("/admin/safety/incidents?severity=low")).json().data).toEqual([]);

    const all = (await get("/admin/safety/incidents")).json().data as Incident[];
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await get(`/admin/safety/incidents?limit=1${cursor === null ? "" : `&cursor=${cursor}`}`);
      expect(page.statusCode, page.body).toBe(200);
      seen.push(...(page.json().data as Incident[]).map((i) => i.id));
      cursor = page.json().next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual(all.map((i) => i.id));
  });

  it("audits the read (safety_incident.read, the customer filtered on)", async () => {
    await get(`/admin/safety/incidents?customer_id=${other.customerId}&severity=critical`);
    const rows = await t.database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "safety_incident.read"), eq(auditLog.customerId, other.customerId)));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows[rows.length - 1]).toMatchObject({ actorUserId: root.userId, targetType: "safety_incident" });
    expect(rows[rows.length - 1]?.details).toMatchObject({ superuser: true, filters: ["customer_id", "severity"] });
  });

  it("bad input: cursor, customer_id, severity, type, time, limit -> 400 invalid_request", async () => {
    for (const q of [
      "cursor=not-a-cursor",
      "customer_id=123",
      "severity=urgent",
      "type=teleport",
      "from=yesterday",
      "limit=0",
      "limit=501",
      "unknown=1",
    ]) {
      expectProblem(await get(`/admin/safety/incidents?${q}`), 400, "invalid_request");
    }
  });
});

describe("GET /admin/safety/stops", () => {
  it("lists the robots under emergency stop of every customer, audited", async () => {
    const res = await get("/admin/safety/stops");
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json() as {
      data: { customer_id: string; robot_id: string; reason: string }[];
      truncated: boolean;
    };
    const pairs = body.data.map((s) => `${s.customer_id}/${s.robot_id}`).sort();
    expect(pairs).toEqual([`${one.customerId}/arm-a`, `${other.customerId}/arm-b`].sort());
    expect(body.truncated).toBe(false);
    expect(typeof body.data[0]?.reason).toBe("string");
    const audit = await t.database.db.select().from(auditLog).where(eq(auditLog.action, "safety_stop.read"));
    expect(audit.length).toBe(1);
  });

  it("limit truncates; a cleared stop disappears; bad limit -> 400", async () => {
    const one = (await get("/admin/safety/stops?limit=1")).json();
    expect(one.data).toHaveLength(1);
    expect(one.truncated).toBe(true);
    const clear = await t.app.inject({
      method: "POST",
      url: "/v1/robots/arm-b/clear-stop",
      headers: bearer(other.session.access),
    });
    expect(clear.statusCode, clear.body).toBe(200);
    const after = (await get("/admin/safety/stops")).json().data as { robot_id: string }[];
    expect(after.map((s) => s.robot_id)).toEqual(["arm-a"]);
    for (const q of ["limit=0", "limit=5001", "limit=x"]) {
      expectProblem(await get(`/admin/safety/stops?${q}`), 400, "invalid_request");
    }
  });
});
