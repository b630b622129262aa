import { describe, expect, it } from "vitest";
import { expertPolicy, runEpisode, setupEpisode } from "../../sim/episode.ts";
import { EXPERT_STEP } from "../../sim/expert.ts";
import { createRng } from "../../sim/rng.ts";
import { STEP_LIMITS, TASK_KINDS } from "../../sim/tasks.ts";

describe("scripted expert", () => {
  it.each(TASK_KINDS)("solves %s on at least 99 percent of 200 seeds, within the step limit", async (kind) => {
    let successes = 0;
    for (let seed = 0; seed < 200; seed++) {
      const result = await runEpisode(setupEpisode(seed, { kind, paraphrase: true }), expertPolicy, { render: false });
      if (result.success) successes++;
      expect(result.steps).toBeLessThanOrEqual(STEP_LIMITS[kind]);
      for (const a of result.actions) {
        expect(a).toHaveLength(7);
        expect(a.slice(3, 6)).toEqual([0, 0, 0]);
        expect([0, 1]).toContain(a[6]);
        for (const d of a.slice(0, 3)) expect(Math.abs(d)).toBeLessThanOrEqual(EXPERT_STEP);
      }
    }
    expect(successes).toBeGreaterThanOrEqual(198);
  });

  it("recovers from perturbed execution (DART-style noise on every step)", async () => {
    let successes = 0;
    for (let seed = 0; seed < 60; seed++) {
      const kind = TASK_KINDS[seed % 3] ?? "pick";
      const rng = createRng(seed);
      const result = await runEpisode(setupEpisode(seed, { kind }), expertPolicy, {
        render: false,
        perturb: (a) => a.map((v, i) => (i < 3 ? v + 0.004 * rng.normal() : v)),
      });
      if (result.success) successes++;
    }
    expect(successes).toBeGreaterThanOrEqual(57);
  });

  it("picks the block the instruction names, not another one", async () => {
    const setup = setupEpisode(11, { instruction: "lift the blue block" });
    const result = await runEpisode(setup, expertPolicy, { render: false });
    expect(result.success).toBe(true);
    expect(result.final.blocks[result.final.held]?.colour).toBe("blue");
  });
});
