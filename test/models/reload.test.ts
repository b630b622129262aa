import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reloadAndLog } from "../../src/modules/models/registry-reload.ts";
import { auditLog } from "../../src/platform/db/schema/index.ts";
import { buildAdminApp } from "../admin/suspension-helpers.ts";
import { bearer, expectProblem, type Session, signUp } from "../auth/helpers.ts";
import { expectSuperuserOnly, signUpSuperuser } from "../helpers/admin.ts";
import type { TestContext } from "../helpers/app.ts";
import { hasRedis, seedCustomer, seedKey } from "../helpers/limits.ts";
import { jpeg } from "../inference/helpers.ts";
import { mockEntry, RegistryFile, STATS_FILE } from "./reload-helpers.ts";

/** POST /admin/models/reload and SIGHUP (issue 23): superuser only, what it answers, refusals. */

const initial = { default_model: "alpha", models: [mockEntry("alpha"), mockEntry("beta"), mockEntry("gamma")] };
const file = new RegistryFile(initial);
let t: TestContext;
let root: Session;
let key: string;
let img: string;

beforeAll(async () => {
  t = await buildAdminApp({ env: { MODELS_CONFIG: file.path } });
  root = await signUpSuperuser(t);
  const customer = await seedCustomer(t.database, { tier: "enterprise" });
  key = (await seedKey(t.database, customer)).key;
  img = (await jpeg(64, 64, 1)).toString("base64");
});
afterAll(async () => {
  await t?.close();
});

const reload = (s: Session = root) =>
  t.app.inject({ method: "POST", url: "/admin/models/reload", headers: bearer(s.access) });
const infer = (model?: string) =>
  t.app.inject({
    method: "POST",
    url: "/v1/inference",
    headers: { "x-api-key": key },
    payload: { image: img, instruction: "pick up the block", robot_id: "arm-1", ...(model ? { model } : {}) },
  });
const models = async () => {
  const res = await t.app.inject({ method: "GET", url: "/v1/models", headers: { "x-api-key": key } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as { data: { id: string; description: string }[]; default_model: string };
};

describe("POST /admin/models/reload", () => {
  it("is superuser only (401 / 403 / 403) and a refused call reloads nothing", async () => {
    const owner = await signUp(t, "owner");
    file.write({ ...initial, models: [...initial.models, mockEntry("sneaky")] });
    await expectSuperuserOnly(t, owner, [{ method: "POST", url: "/admin/models/reload" }]);
    expect((await models()).data.map((m) => m.id)).toEqual(["alpha", "beta", "gamma"]);
    file.write(initial);
  });

  it("applies the file and says what changed; the new registry serves at once; audited", async () => {
    file.write({
      default_model: "delta",
      models: [mockEntry("alpha"), mockEntry("beta", { description: "beta v2" }), mockEntry("delta")],
    });
    const res = await reload();
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      added: ["delta"],
      changed: ["beta"],
      removed: ["gamma"],
      unchanged: ["alpha"],
      default_model: "delta",
      previous_default_model: "alpha",
      broadcast: t.redis.client !== null,
    });
    expect(typeof body.duration_ms).toBe("number");
    const listed = await models();
    expect(listed.default_model).toBe("delta");
    expect(listed.data.map((m) => [m.id, m.description])).toEqual([
      ["alpha", ""],
      ["beta", "beta v2"],
      ["delta", ""],
    ]);
    expect((await infer()).json()).toMatchObject({ model: "delta" });
    expect((await infer("beta")).statusCode).toBe(200);
    expectProblem(await infer("gamma"), 404, "unknown_model");
    const rows = await t.database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "model_registry.reload"), eq(auditLog.actorUserId, root.userId)));
    expect(rows.at(-1)).toMatchObject({
      targetType: "model_registry",
      customerId: null,
      details: { outcome: "ok", added: ["delta"], changed: ["beta"], removed: ["gamma"] },
    });
    // The same file again: nothing changes.
    const again = (await reload()).json();
    expect(again).toMatchObject({ added: [], changed: [], removed: [], unchanged: ["alpha", "beta", "delta"] });
  });

  it("a file with errors is 422 invalid_registry with every problem; the running registry stays", async () => {
    const before = await models();
    file.write({
      default_model: "nope",
      models: [
        mockEntry("alpha", { action: { dim: 0, chunk: 1 } }),
        mockEntry("beta", { backend: { kind: "warp-drive" } }),
        mockEntry("delta"),
      ],
    });
    const res = await reload();
    const body = expectProblem(res, 422, "invalid_registry");
    const problems = body.problems as string[];
    expect(problems).toHaveLength(3);
    expect(problems[0]).toContain('model "alpha" (models[0]): action');
    expect(problems[1]).toContain('model "beta" (models[1]): backend');
    expect(problems[2]).toContain('default_model "nope"');
    expect(await models()).toEqual(before);
    expect((await infer("alpha")).statusCode).toBe(200);
    expect((await infer()).json()).toMatchObject({ model: "delta" });
    // Not JSON at all: one problem naming the file.
    file.writeText("{ not json");
    const broken = expectProblem(await reload(), 422, "invalid_registry");
    expect(broken.problems).toEqual([expect.stringContaining(file.path)]);
    const metrics = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.body).toMatch(/vla_model_registry_reloads_total\{outcome="invalid_registry"\} 2/);
    expect(metrics.body).toMatch(/vla_model_registry_loaded_timestamp_seconds \d/);
    const refused = await t.database.db.select().from(auditLog).where(eq(auditLog.action, "model_registry.reload"));
    expect(refused.at(-1)?.details).toEqual({ outcome: "refused", code: "invalid_registry", problems: 1 });
    file.write({ default_model: "delta", models: [mockEntry("alpha"), mockEntry("delta")] });
  });

  it("the SIGHUP handler (reloadAndLog) applies a good file and logs a bad one's problems at error level", async () => {
    const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
    const log = {
      info: (fields: Record<string, unknown>, msg: string) => lines.push({ level: "info", fields, msg }),
      error: (fields: Record<string, unknown>, msg: string) => lines.push({ level: "error", fields, msg }),
    };
    const engine = t.app.platform.engine;
    const change = await reloadAndLog(engine, log, "sighup");
    expect(change?.removed).toEqual(["beta"]);
    expect(lines.at(-1)).toMatchObject({ level: "info", msg: "model registry reloaded" });
    expect(lines.at(-1)?.fields).toMatchObject({ trigger: "sighup", removed: ["beta"] });
    file.write({ models: [mockEntry("alpha", { image: { width: 0 } })] });
    expect(await reloadAndLog(engine, log, "sighup")).toBeUndefined();
    const last = lines.at(-1);
    expect(last?.level).toBe("error");
    expect(last?.fields).toMatchObject({ trigger: "sighup", code: "invalid_registry" });
    expect((last?.fields.problems as string[] | undefined)?.[0]).toContain('model "alpha"');
    expect(last?.msg).toContain('model "alpha"');
    expect(engine.modelIds()).toEqual(["alpha", "delta"]);
  });
});

describe("what depends on model definitions follows a reload", () => {
  it("safety's defaults (the gripper range from the model's statistics) are computed again", async () => {
    const gripper = async () => {
      const res = await t.app.inject({
        method: "GET",
        url: "/v1/robots/arm-1/safety-profile?model=alpha&unnorm_key=bridge_orig",
        headers: { "x-api-key": key },
      });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().profile.gripper as number[];
    };
    file.write({ default_model: "alpha", models: [mockEntry("alpha")] });
    expect((await reload()).statusCode).toBe(200);
    expect(await gripper()).toEqual([0, 1]); // bridge_orig's min/max of the gripper
    // New statistics for alpha: the gripper dimension spans 0..0.5 now.
    const original = JSON.parse(readFileSync(STATS_FILE, "utf8"));
    original.bridge_orig.action.max[6] = 0.5;
    original.bridge_orig.action.q99[6] = 0.5;
    const statsPath = path.join(path.dirname(file.path), "stats-v2.json");
    writeFileSync(statsPath, JSON.stringify(original));
    file.write({ default_model: "alpha", models: [mockEntry("alpha", { dataset_statistics: statsPath })] });
    expect((await reload()).json()).toMatchObject({ changed: ["alpha"] });
    expect(await gripper()).toEqual([0, 0.5]);
  });
});

describe("the server process (src/server.ts) on SIGHUP", () => {
  it("reloads the registry, logs a refused file's problems, and keeps running", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "vla-sighup-"));
    const own = new RegistryFile({ models: [mockEntry("one")] });
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: "development",
      DATA_DIR: dataDir,
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      LOG_PRETTY: "false",
      BOOTSTRAP_DEMO: "off",
      MODELS_WARM_UP: "false",
      MODELS_CONFIG: own.path,
    };
    delete env.DATABASE_URL;
    delete env.REDIS_URL;
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, "../../src/server.ts")], {
      cwd: dataDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    let out = "";
    const waitFor = (re: RegExp, from: number) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const m = re.exec(out.slice(from));
          if (m !== null) resolve(m[0]);
        };
        child.stdout.on("data", check);
        check();
        void exited.then(() => reject(new Error(`server exited: ${out.slice(-2000)}`)));
      });
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      await waitFor(/"url":"http:\/\/127\.0\.0\.1:\d+"/, 0);
      own.write({ models: [mockEntry("one"), mockEntry("two")] });
      let mark = out.length;
      child.kill("SIGHUP");
      const ok = JSON.parse(await waitFor(/\{[^\n]*"msg":"model registry reloaded"[^\n]*\}/, mark));
      expect(ok).toMatchObject({ trigger: "sighup", added: ["two"], unchanged: ["one"] });
      own.write({ models: [mockEntry("one", { action: { dim: 99, chunk: 1 } })] });
      mark = out.length;
      child.kill("SIGHUP");
      const refused = JSON.parse(await waitFor(/\{[^\n]*"msg":"model registry reload refused[^\n]*\}/, mark));
      expect(refused.level).toBe(50); // pino's error
      expect(refused.problems).toEqual([expect.stringContaining('model "one" (models[0]): action.dim')]);
      expect(child.exitCode).toBeNull(); // SIGHUP's default action would have ended it
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe.skipIf(!hasRedis)("across instances sharing Redis", () => {
  it("POST /admin/models/reload on A reloads B too (from B's own copy of the file)", async () => {
    const prefix = `t:reload-${randomBytes(6).toString("hex")}:`;
    const fileA = new RegistryFile({ models: [mockEntry("one")] });
    const fileB = new RegistryFile({ models: [mockEntry("one")] });
    const a = await buildAdminApp({ redisKeyPrefix: prefix, env: { MODELS_CONFIG: fileA.path } });
    const b = await buildAdminApp({ database: a.database, redisKeyPrefix: prefix, env: { MODELS_CONFIG: fileB.path } });
    try {
      const superuser = await signUpSuperuser(a);
      fileA.write({ models: [mockEntry("one"), mockEntry("two")] });
      fileB.write({ models: [mockEntry("one"), mockEntry("two")] });
      const res = await a.app.inject({
        method: "POST",
        url: "/admin/models/reload",
        headers: bearer(superuser.access),
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ added: ["two"], broadcast: true });
      await expect.poll(() => b.app.platform.engine.modelIds(), { timeout: 5_000 }).toEqual(["one", "two"]);
      const metrics = await b.app.inject({ method: "GET", url: "/metrics" });
      expect(metrics.body).toMatch(/vla_model_registry_reloads_total\{outcome="ok"\} 1/);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
