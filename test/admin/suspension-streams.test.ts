import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer, expectProblem, type Session } from "../auth/helpers.ts";
import { signUpSuperuser } from "../helpers/admin.ts";
import { hasRedis } from "../helpers/limits.ts";
import { Client } from "../streaming/helpers.ts";
import { as, buildAdminApp, newTenant, suspendReq, type Tenant, unsuspendReq } from "./suspension-helpers.ts";

type AdminApp = Awaited<ReturnType<typeof buildAdminApp>>;

async function stream(app: AdminApp, key: string): Promise<Client> {
  const c = new Client(`${app.baseUrl}/v1/stream`, { "x-api-key": key });
  await c.opened();
  c.json({ type: "start", robot_id: "arm-1", instruction: "pick up the red block", unnorm_key: "bridge_orig" });
  await c.type("started");
  return c;
}

async function openpi(app: AdminApp, key: string): Promise<Client> {
  const c = new Client(`${app.baseUrl}/v1/openpi`, { authorization: `Api-Key ${key}` });
  await c.opened();
  await c.next(() => c.raw.length >= 1); // the metadata frame
  return c;
}

describe("open streams of a suspended customer", () => {
  let t: AdminApp;
  let root: Session;
  beforeAll(async () => {
    t = await buildAdminApp({ listen: true });
    root = await signUpSuperuser(t);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("are closed with 4403 and the reason (native: error + stopped; openpi: its text frame); others stay open", async () => {
    const v = await newTenant(t, "streamer");
    const other = await newTenant(t, "other-streamer");
    const native = await stream(t, v.key);
    const pi = await openpi(t, v.key);
    const bystander = await stream(t, other.key);

    const res = await as(t, root, suspendReq(v.customerId, { reason: "fleet misuse" }));
    expect(res.statusCode, res.body).toBe(200);

    const closed = await native.closed;
    expect(closed.code).toBe(4403);
    expect(closed.reason).toMatch(/^customer_suspended: /);
    expect(await native.type("error")).toMatchObject({ code: "customer_suspended" });
    expect(String((await native.type("error")).message)).toContain("fleet misuse");
    expect(await native.type("stopped")).toMatchObject({ reason: "customer_suspended" });

    const piClosed = await pi.closed;
    expect(piClosed.code).toBe(4403);
    expect(piClosed.reason).toBe("customer_suspended");
    const text = pi.raw.find((r) => !r.isBinary)?.data.toString();
    expect(text).toMatch(/^customer_suspended: .*fleet misuse/);

    // A new connection while suspended is refused like any failed authentication (1008).
    const again = new Client(`${t.baseUrl}/v1/stream`, { "x-api-key": v.key });
    await again.opened();
    expect(await again.type("error")).toMatchObject({ code: "customer_suspended" });
    expect((await again.closed).code).toBe(1008);

    // The other customer's stream still answers.
    bystander.json({ type: "stats" });
    expect(await bystander.type("stats")).toBeDefined();
    bystander.close();

    expect((await as(t, root, unsuspendReq(v.customerId))).statusCode).toBe(200);
    const back = await stream(t, v.key);
    back.close();
  });
});

describe.skipIf(!hasRedis)("across instances sharing the database and Redis", () => {
  let a: AdminApp;
  let b: AdminApp;
  let root: Session;
  let v: Tenant;
  beforeAll(async () => {
    const prefix = `t:susp-${randomBytes(6).toString("hex")}:`;
    a = await buildAdminApp({ redisKeyPrefix: prefix });
    // B keeps verified keys fresh for ten minutes: only the broadcast can make it notice.
    b = await buildAdminApp({
      database: a.database,
      redisKeyPrefix: prefix,
      listen: true,
      env: { API_KEY_CACHE_FRESH_MS: "600000", API_KEY_CACHE_STALE_MS: "600000" },
    });
    root = await signUpSuperuser(a);
    v = await newTenant(a, "two-instances");
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("a suspend on A stops B's cached key, sessions and streams; an unsuspend on A restores them on B", async () => {
    const onB = (headers: Record<string, string>, url = "/v1/usage") => b.app.inject({ method: "GET", url, headers });
    expect((await onB({ "x-api-key": v.key })).statusCode).toBe(200); // cached on B now
    expect((await onB(bearer(v.access), "/auth/me")).statusCode).toBe(200);
    const s = await stream(b, v.key);

    const started = performance.now();
    expect((await as(a, root, suspendReq(v.customerId, { reason: "chargeback" }))).statusCode).toBe(200);
    // The broadcast arrives asynchronously: poll (bounded well above the expected milliseconds).
    let res = await onB({ "x-api-key": v.key });
    for (let i = 0; i < 250 && res.statusCode === 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      res = await onB({ "x-api-key": v.key });
    }
    const elapsedMs = performance.now() - started;
    expectProblem(res, 403, "customer_suspended");
    expectProblem(await onB(bearer(v.access), "/auth/me"), 403, "customer_suspended");
    expect((await s.closed).code).toBe(4403);
    console.info(`suspension reached instance B after ${elapsedMs.toFixed(0)} ms`);

    expect((await as(a, root, unsuspendReq(v.customerId))).statusCode).toBe(200);
    res = await onB({ "x-api-key": v.key });
    for (let i = 0; i < 250 && res.statusCode !== 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      res = await onB({ "x-api-key": v.key });
    }
    expect(res.statusCode).toBe(200);
    expect((await onB(bearer(v.access), "/auth/me")).statusCode).toBe(200);
  });
});
