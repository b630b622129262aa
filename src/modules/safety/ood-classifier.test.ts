import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadDatasetStatistics } from "../models/dataset-statistics.ts";
import { evaluate } from "./evaluator.ts";
import { momentsFromDatasetStatistics, OodClassifier } from "./ood-classifier.ts";
import { GLOBAL_DEFAULT_PROFILE } from "./profile.ts";

const file = fileURLToPath(new URL("../../../models/mock-openvla-7b/dataset_statistics.json", import.meta.url));
const moments = momentsFromDatasetStatistics(loadDatasetStatistics(file));
const bridge = moments.get("bridge_orig");
if (bridge === undefined) throw new Error("no bridge_orig stats");
const mean = [...bridge.mean];
const std = [...bridge.std];
const ctx = (steps: number[][], unnormKey = "bridge_orig") => ({ steps, profile: GLOBAL_DEFAULT_PROFILE, unnormKey });
const at = (dim: number, sigmas: number) => mean.map((m, i) => (i === dim ? m + sigmas * (std[i] as number) : m));

describe("OodClassifier", () => {
  const ood = new OodClassifier({ stats: moments });
  it("the mean is in distribution", () => {
    const r = ood.classify(ctx([mean]));
    expect(r.label).toBe("in_distribution");
    expect(r.risk).toBe(0);
  });
  it("at k std passes, just beyond is flagged with a severity from the excess", () => {
    expect(ood.classify(ctx([at(0, 3.99)])).risk).toBeLessThan(0.5);
    const atK = ood.classify(ctx([at(1, 4)]));
    expect(atK.label).toBe("in_distribution");
    const r = ood.classify(ctx([at(2, 4.2)]));
    expect(r.label).toBe("out_of_distribution");
    expect(r.risk).toBeGreaterThanOrEqual(0.5);
    expect(r.severity).toBe("low");
    expect(r.reasons[0]).toMatch(/dz is 4\.2 std/);
    expect(ood.classify(ctx([at(5, -5.5)])).severity).toBe("medium");
    expect(ood.classify(ctx([at(5, -7.5)])).severity).toBe("high");
    expect(ood.classify(ctx([at(5, 9)])).severity).toBe("critical");
  });
  it("k is configurable; chunks report the step", () => {
    expect(new OodClassifier({ stats: moments, k: 6 }).classify(ctx([at(0, 5)])).label).toBe("in_distribution");
    const r = ood.classify(ctx([mean, at(3, 5)]));
    expect(r.reasons[0]).toMatch(/step 1/);
  });
  it("skips an unknown unnorm key", () => {
    expect(ood.classify(ctx([mean], "nope")).skipped).toMatch(/no dataset statistics/);
  });
  it("plugs into evaluate: an OOD action is rejected under the default policy", async () => {
    const r = await evaluate(
      { action: at(0, 5), profile: GLOBAL_DEFAULT_PROFILE },
      { classifiers: [ood], unnormKey: "bridge_orig" },
    );
    expect(r.violations.map((v) => v.type)).toEqual(["classifier"]);
    expect(r.violations[0]?.measured).toBeCloseTo(5, 9);
    expect(r.violations[0]?.limit).toBe(4);
    expect(r.status).toBe("rejected");
    const ok = await evaluate(
      { action: mean, profile: GLOBAL_DEFAULT_PROFILE },
      { classifiers: [ood], unnormKey: "bridge_orig" },
    );
    expect(ok.status).toBe("pass");
  });
  it("refuses a non-positive k", () => {
    expect(() => new OodClassifier({ stats: moments, k: 0 })).toThrow();
  });
});
