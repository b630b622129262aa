import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportServices, exportsDir } from "../../src/modules/account-export/export.module.ts";
import { hashPassword } from "../../src/modules/auth/password.ts";
import { type InferenceLogEntry, InferenceLogsRepo } from "../../src/modules/inference/inference-logs.repo.ts";
import {
  accountExports,
  auditLog,
  customers,
  feedback,
  robotProfiles,
  safetyIncidents,
  usageCounters,
  users,
} from "../../src/platform/db/schema/index.ts";
import { bearer, expectProblem, login, PASSWORD, type Session, signUp } from "../auth/helpers.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { FakeClock } from "../helpers/limits.ts";
import { ndjson, untar } from "./helpers.ts";

let t: TestContext;
const clock = new FakeClock(Date.now());

beforeAll(async () => {
  t = await buildTestApp({ now: clock.now, env: { MODELS_WARM_UP: "false" } });
});
afterAll(async () => {
  await t?.close();
});

const service = () => {
  const s = exportServices.get(t.app.platform);
  if (s === undefined) throw new Error("export module not registered");
  return s;
};

const post = (headers: Record<string, string>) => t.app.inject({ method: "POST", url: "/v1/account/export", headers });
const get = (id: string, headers: Record<string, string>) =>
  t.app.inject({ method: "GET", url: `/v1/account/export/${id}`, headers });
const download = (id: string, headers: Record<string, string>) =>
  t.app.inject({ method: "GET", url: `/v1/account/export/${id}/download`, headers });

async function createKey(s: Session, scopes: string[]): Promise<{ id: string; key: string }> {
  const res = await t.app.inject({
    method: "POST",
    url: "/v1/api-keys",
    headers: bearer(s.access),
    payload: { name: `k-${scopes.join("-")}`, scopes },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as { id: string; key: string };
}

/** Requests an export and waits for the job to finish. */
async function exportDone(headers: Record<string, string>): Promise<{ id: string; job: Record<string, unknown> }> {
  const res = await post(headers);
  expect(res.statusCode, res.body).toBe(202);
  const id = (res.json() as { id: string }).id;
  expect(res.headers.location).toBe(`/v1/account/export/${id}`);
  await service().idle();
  const st = await get(id, headers);
  expect(st.statusCode, st.body).toBe(200);
  return { id, job: st.json() as Record<string, unknown> };
}

function logEntry(customerId: string, i: number, createdAt: string): InferenceLogEntry {
  return {
    id: randomUUID(),
    createdAt,
    customerId,
    apiKeyId: null,
    userId: null,
    model: "mock-openvla-7b",
    backend: "mock",
    robotId: "arm-1",
    instruction: `pick block ${i}`,
    instructionSha256: null,
    imageSha256: null,
    action: [0, 0, 0, 0, 0, 0, 1],
    actionChunk: null,
    unnormKey: "bridge_orig",
    status: "ok",
    errorCode: null,
    preprocessMs: 1,
    queueMs: 0,
    modelMs: 1,
    totalMs: 2,
    source: "rest",
    safetyStatus: "pass",
  };
}

async function seedData(customerId: string, logs: number): Promise<void> {
  const db = t.database.db;
  // Rows sharing a millisecond (microseconds apart) check the keyset cursor's precision.
  const base = Date.now() - 3_600_000;
  const entries = Array.from({ length: logs }, (_, i) => {
    const at = new Date(base + Math.floor(i / 3)).toISOString().replace("Z", `${String(i % 3).padStart(3, "0")}Z`);
    return logEntry(customerId, i, at);
  });
  await new InferenceLogsRepo(db).insertMany(entries);
  await db.insert(safetyIncidents).values({
    customerId,
    robotId: "arm-1",
    violationType: "workspace",
    severity: "high",
    actionTaken: "clamped",
    message: "x beyond 0.9",
  });
  await db.insert(robotProfiles).values({ customerId, robotId: "arm-1", profile: { max_linear_velocity: 0.5 } });
  await db.insert(feedback).values({
    customerId,
    inferenceId: entries[0]?.id ?? randomUUID(),
    inferenceCreatedAt: new Date(base),
    model: "mock-openvla-7b",
    type: "success",
    rating: 4,
    requestHash: "f".repeat(64),
  });
  await db.insert(usageCounters).values({ customerId, month: "2026-11-01", requests: 42, streamMs: 1000 });
}

describe("account export", () => {
  let owner: Session;
  let member: string;
  let adminKey: { id: string; key: string };
  let inferenceKey: { id: string; key: string };
  let other: Session;

  beforeAll(async () => {
    owner = await signUp(t, "exp-owner");
    const memberEmail = `exp-member-${owner.userId.slice(0, 8)}@example.com`;
    await t.database.db.insert(users).values({
      customerId: owner.customerId,
      email: memberEmail,
      role: "member",
      passwordHash: await hashPassword(PASSWORD),
    });
    member = ((await login(t, memberEmail, PASSWORD)).json() as { access_token: string }).access_token;
    adminKey = await createKey(owner, ["admin"]);
    inferenceKey = await createKey(owner, ["inference"]);
    other = await signUp(t, "exp-other");
    await seedData(owner.customerId, 30);
    await seedData(other.customerId, 5);
  });

  it("writes every section as NDJSON, without secrets, and only the requester downloads it", async () => {
    const { id, job } = await exportDone(bearer(owner.access));
    expect(job.status).toBe("done");
    expect(job.download_url).toBe(`/v1/account/export/${id}/download`);
    expect(job.progress).toMatchObject({
      profile: 1,
      members: 2,
      api_keys: 2,
      inference_logs: 30,
      safety_incidents: 1,
      robot_profiles: 1,
      feedback: 1,
      usage: 1,
    });
    expect(Date.parse(job.expires_at as string) - Date.parse(job.finished_at as string)).toBe(24 * 3_600_000);

    const res = await download(id, bearer(owner.access));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers["content-type"]).toBe("application/gzip");
    expect(res.headers["content-disposition"]).toMatch(/^attachment; filename="account-export-.*\.tar\.gz"$/);
    const files = untar(res.rawPayload);
    expect([...files.keys()]).toEqual([
      "profile.ndjson",
      "members.ndjson",
      "api_keys.ndjson",
      "usage.ndjson",
      "customer_models.ndjson",
      "safety_incidents.ndjson",
      "robot_profiles.ndjson",
      "consent_history.ndjson",
      "context_metadata.ndjson",
      "images.ndjson",
      "experiments.ndjson",
      "shadow_results.ndjson",
      "inference_logs.ndjson",
      "feedback.ndjson",
      "manifest.json",
    ]);

    const profile = ndjson(files.get("profile.ndjson"));
    expect(profile).toHaveLength(1);
    expect(profile[0]).toMatchObject({ id: owner.customerId, email: owner.email, tier: "free" });
    const members = ndjson(files.get("members.ndjson"));
    expect(members.map((m) => m.role).sort()).toEqual(["member", "owner"]);
    for (const m of members) {
      expect(m).not.toHaveProperty("password_hash");
      expect(m).not.toHaveProperty("token_version");
    }
    const keys = ndjson(files.get("api_keys.ndjson"));
    expect(keys.map((k) => k.id).sort()).toEqual([adminKey.id, inferenceKey.id].sort());
    for (const k of keys) expect(k).not.toHaveProperty("key_hash");

    const logs = ndjson(files.get("inference_logs.ndjson"));
    expect(logs).toHaveLength(30);
    expect(new Set(logs.map((l) => l.id)).size).toBe(30);
    expect(logs[0]).toMatchObject({
      model: "mock-openvla-7b",
      instruction: "pick block 0",
      action: [0, 0, 0, 0, 0, 0, 1],
    });
    expect(logs[1]?.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(ndjson(files.get("feedback.ndjson"))[0]).not.toHaveProperty("request_hash");
    expect(ndjson(files.get("usage.ndjson"))[0]).toMatchObject({ month: "2026-11-01", requests: 42 });
    expect(ndjson(files.get("robot_profiles.ndjson"))[0]).toMatchObject({ robot_id: "arm-1" });

    const manifest = JSON.parse(files.get("manifest.json") ?? "{}") as Record<string, unknown>;
    expect(manifest).toMatchObject({ format_version: 1, export_id: id, customer_id: owner.customerId });

    // No secret anywhere: the stored password hashes, key hashes, the keys themselves, refresh tokens.
    const all = [...files.values()].join("\n");
    const secrets = [
      ...(await t.database.db.select().from(users).where(eq(users.customerId, owner.customerId))).map(
        (u) => u.passwordHash,
      ),
      adminKey.key,
      inferenceKey.key,
      owner.refresh,
      owner.access,
    ];
    const { apiKeys } = await import("../../src/platform/db/schema/index.ts");
    for (const k of await t.database.db.select().from(apiKeys).where(eq(apiKeys.customerId, owner.customerId))) {
      secrets.push(k.keyHash);
    }
    for (const s of secrets) expect(all).not.toContain(s);
    // Nothing of the other customer.
    expect(all).not.toContain(other.customerId);

    // Only the user who asked downloads: the same customer's admin key may not.
    expectProblem(await download(id, { "x-api-key": adminKey.key }), 403, "forbidden");
    // The file on disk is private to the service's user.
    const file = path.join(exportsDir(t.config.dataDir), `${id}.tar.gz`);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    // The request and the download are in the audit log (the refused download is not).
    const audit = await t.database.db
      .select({ action: auditLog.action, actor: auditLog.actorUserId, customer: auditLog.customerId })
      .from(auditLog)
      .where(eq(auditLog.targetId, id));
    expect(audit.map((a) => a.action).sort()).toEqual(["account.export.download", "account.export.request"]);
    for (const a of audit) expect(a).toMatchObject({ actor: owner.userId, customer: owner.customerId });
  });

  it("an export requested with an admin API key is downloaded with that key only", async () => {
    const headers = { "x-api-key": adminKey.key };
    const { id, job } = await exportDone(headers);
    expect(job.status).toBe("done");
    expectProblem(await download(id, bearer(owner.access)), 403, "forbidden");
    expect((await download(id, headers)).statusCode).toBe(200);
  });

  it("refuses no credentials (401), members and inference keys (403), another customer's id (404)", async () => {
    const { id } = await exportDone(bearer(owner.access));
    expectProblem(await post({}), 401, "unauthorized");
    expectProblem(await get(id, {}), 401, "unauthorized");
    expectProblem(await download(id, {}), 401, "unauthorized");
    expectProblem(await post(bearer(member)), 403, "forbidden");
    expectProblem(await get(id, bearer(member)), 403, "forbidden");
    expectProblem(await download(id, bearer(member)), 403, "forbidden");
    expectProblem(await post({ "x-api-key": inferenceKey.key }), 403, "forbidden");
    expectProblem(await get(id, bearer(other.access)), 404, "not_found");
    expectProblem(await download(id, bearer(other.access)), 404, "not_found");
    expectProblem(await get(randomUUID(), bearer(owner.access)), 404, "not_found");
    expectProblem(await get("not-a-uuid", bearer(owner.access)), 400, "invalid_request");
  });

  it("expires after EXPORT_TTL_HOURS: 410, then the cleanup deletes the archive", async () => {
    const { id } = await exportDone(bearer(owner.access));
    const file = path.join(exportsDir(t.config.dataDir), `${id}.tar.gz`);
    expect(existsSync(file)).toBe(true);
    clock.advance(24 * 3_600_000 - 1);
    expect((await download(id, bearer(owner.access))).statusCode).toBe(200);
    clock.advance(1);
    expectProblem(await download(id, bearer(owner.access)), 410, "export_expired");
    expect((await get(id, bearer(owner.access))).json()).toMatchObject({ status: "expired", download_url: null });
    const swept = await service().cleanup();
    expect(swept.expired).toBeGreaterThanOrEqual(1);
    expect(existsSync(file)).toBe(false);
    const [row] = await t.database.db.select().from(accountExports).where(eq(accountExports.id, id));
    expect(row).toMatchObject({ status: "expired", filePath: null });
    expectProblem(await download(id, bearer(owner.access)), 410, "export_expired");
  });

  it("the cleanup removes files no job owns (a crash's leftovers)", async () => {
    const dir = exportsDir(t.config.dataDir);
    const { writeFileSync, mkdirSync } = await import("node:fs");
    mkdirSync(dir, { recursive: true });
    const stray = `${randomUUID()}.tar.gz.part`;
    writeFileSync(path.join(dir, stray), "x");
    await service().cleanup();
    expect(readdirSync(dir)).not.toContain(stray);
  });

  it("account deletion removes the customer's export rows", async () => {
    const gone = await signUp(t, "exp-gone");
    await exportDone(bearer(gone.access));
    const res = await t.app.inject({
      method: "DELETE",
      url: "/auth/me",
      headers: bearer(gone.access),
      payload: { password: PASSWORD },
    });
    expect([200, 204]).toContain(res.statusCode);
    const rows = await t.database.db
      .select()
      .from(accountExports)
      .where(eq(accountExports.customerId, gone.customerId));
    expect(rows).toEqual([]);
    expect(await t.database.db.select().from(customers).where(eq(customers.id, gone.customerId))).toEqual([]);
  });
});
