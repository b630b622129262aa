import { describe, expect, it } from "vitest";
import { JobRegistry } from "./jobs.ts";

describe("JobRegistry", () => {
  it("records last run, outcome, last error and the next run from the interval", async () => {
    let now = Date.parse("2026-12-05T10:00:00Z");
    const jobs = new JobRegistry(() => now);
    const job = jobs.register("demo", 60_000);
    expect(jobs.list()[0]).toMatchObject({
      name: "demo",
      last_run_at: null,
      last_outcome: null,
      next_run_at: "2026-12-05T10:01:00.000Z",
      runs: 0,
    });
    now += 5_000;
    expect(await job.run(async () => 42)).toBe(42);
    expect(jobs.list()[0]).toMatchObject({
      last_run_at: "2026-12-05T10:00:05.000Z",
      last_outcome: "ok",
      next_run_at: "2026-12-05T10:01:05.000Z",
      runs: 1,
      failures: 0,
      running: false,
    });
    now += 60_000;
    await expect(job.run(async () => Promise.reject(new Error("database away")))).rejects.toThrow("database away");
    expect(jobs.list()[0]).toMatchObject({
      last_outcome: "failed",
      last_error: "database away",
      last_error_at: "2026-12-05T10:01:05.000Z",
      runs: 2,
      failures: 1,
    });
    now += 60_000;
    await job.run(async () => undefined);
    // The error stays visible after a later success.
    expect(jobs.list()[0]).toMatchObject({ last_outcome: "ok", last_error: "database away", failures: 1 });
  });

  it("failed() records a failure the job caught itself", () => {
    const jobs = new JobRegistry(() => 0);
    jobs.register("x", 1_000).failed(new Error("partition not created"));
    expect(jobs.list()[0]).toMatchObject({ last_outcome: "failed", last_error: "partition not created" });
  });
});
