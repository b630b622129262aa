import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { evaluateSync } from "./evaluator.ts";
import { GLOBAL_DEFAULT_PROFILE } from "./profile.ts";
import { createSafetyMetrics } from "./safety.metrics.ts";

describe("safety metrics", () => {
  it("counts evaluations by status and violations by type and severity", async () => {
    const registry = new Registry();
    const m = createSafetyMetrics(registry);
    m.record(evaluateSync({ action: [0.2, 0, 0, 0, 0, 0, 1.5], profile: GLOBAL_DEFAULT_PROFILE }));
    m.record(evaluateSync({ action: [0, 0, 0, 0, 0, 0, 0.5], profile: GLOBAL_DEFAULT_PROFILE }));
    const text = await registry.metrics();
    expect(text).toContain('vla_safety_violations_total{type="linear_velocity",severity="high"} 1');
    expect(text).toContain('vla_safety_violations_total{type="gripper",severity="medium"} 1');
    expect(text).toContain('vla_safety_evaluations_total{status="rejected"} 1');
    expect(text).toContain('vla_safety_evaluations_total{status="pass"} 1');
  });
});
