import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { analyticsContexts } from "../../src/modules/analytics/analytics.module.ts";
import { bearer, expectProblem, type Session } from "../auth/helpers.ts";
import { signUpSuperuser } from "../helpers/admin.ts";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

let t: TestContext;
let root: Session;

beforeAll(async () => {
  t = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
  root = await signUpSuperuser(t);
});
afterAll(async () => {
  await t?.close();
});

const get = (url = "/admin/monitoring/health") => t.app.inject({ method: "GET", url, headers: bearer(root.access) });

type Job = { name: string; last_outcome: string | null; last_error: string | null; next_run_at: string };

describe("GET /admin/monitoring/health", () => {
  it("reports the database, Redis, models, batch writers and the jobs", async () => {
    const res = await get();
    expect(res.statusCode, res.body).toBe(200);
    const h = res.json();
    expect(["ok", "degraded"]).toContain(h.status);
    expect(h.checks.database.status).toBe("ok");
    expect(h.database.kind).toBe(t.database.kind);
    expect(h.database.round_trip_ms).toBeGreaterThanOrEqual(0);
    expect(h.database.pool === null).toBe(t.database.kind === "pglite");
    expect(h.database.partitions.expected).toHaveLength(3);
    expect(h.database.partitions.missing).toEqual([]);
    expect(h.redis.status).toBe(t.redis.client === null ? "disabled" : "ok");
    expect(h.models.length).toBeGreaterThan(0);
    expect(h.models[0]).toMatchObject({ backend: expect.any(String), endpoints: [] });
    const writers = (h.batch_writers as { writer: string; dropped: number }[]).map((w) => w.writer);
    expect(writers).toContain("inference-logs");
    const jobs = h.jobs as Job[];
    const names = jobs.map((j) => j.name);
    for (const n of ["analytics.rollups", "inference_logs.partitions", "retention"]) expect(names).toContain(n);
    // The partition check runs at startup.
    expect(jobs.find((j) => j.name === "inference_logs.partitions")?.last_outcome).toBe("ok");
  });

  it("a job's tick reports its run (the analytics rollups)", async () => {
    const job = analyticsContexts.get(t.app.platform)?.job;
    if (job === undefined) throw new Error("no analytics job");
    await job.runOnce();
    const rollups = ((await get()).json().jobs as (Job & { runs: number })[]).find(
      (j) => j.name === "analytics.rollups",
    );
    expect(rollups).toMatchObject({ last_outcome: "ok", last_error: null });
    expect(rollups?.runs).toBeGreaterThanOrEqual(1);
  });

  it("a job whose last run failed makes it degraded, with the error", async () => {
    t.app.platform.jobs.register("probe.job", 60_000).failed(new Error("disk full"));
    const res = await get();
    expect(res.statusCode).toBe(200);
    expect(res.json().status).toBe("degraded");
    expect((res.json().jobs as Job[]).find((j) => j.name === "probe.job")).toMatchObject({
      last_outcome: "failed",
      last_error: "disk full",
    });
  });

  it("503 when a critical component is down, like /health", async () => {
    t.app.platform.health.register("probe", async () => ({ status: "down", detail: "gone" }), { critical: true });
    const res = await get();
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ status: "down", checks: { probe: { status: "down", detail: "gone" } } });
  });

  it("refuses query parameters (400)", async () => {
    expectProblem(await get("/admin/monitoring/health?verbose=1"), 400, "invalid_request");
  });
});
