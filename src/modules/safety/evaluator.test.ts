import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { evaluate, evaluateSync, notEvaluated, severityFromExcess, zoneDistance } from "./evaluator.ts";
import { GLOBAL_DEFAULT_PROFILE, type KeepOutZone, resolveProfile, type SafetyProfile } from "./profile.ts";
import type { ClassifierResult, SafetyClassifier, Violation } from "./types.ts";

function profile(over: unknown = {}): SafetyProfile {
  const r = resolveProfile(over);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.profile;
}
// Global default: 5 Hz, 0.5 m/s (0.1 m/step), 1.5 rad/s (0.3 rad/step), 2 m/s² (0.08 m/step change), 6 rad/s² (0.24 rad/step change).
const P = GLOBAL_DEFAULT_PROFILE;
const act = (dx = 0, dy = 0, dz = 0, rx = 0, ry = 0, rz = 0, g = 0.5) => [dx, dy, dz, rx, ry, rz, g];
const types = (vs: readonly Violation[]) => vs.map((v) => v.type);

describe("severity thresholds", () => {
  it.each([
    [0.0001, "low"],
    [0.1, "low"],
    [0.1001, "medium"],
    [0.5, "medium"],
    [0.5001, "high"],
    [1.0, "high"],
    [1.0001, "critical"],
    [Number.NaN, "critical"],
  ] as const)("excess %f -> %s", (r, s) => {
    expect(severityFromExcess(r)).toBe(s);
  });
});

describe("linear velocity", () => {
  it("passes at and just below the limit, flags just above", () => {
    expect(evaluateSync({ action: act(0.1), profile: P }).status).toBe("pass");
    expect(evaluateSync({ action: act(0.099), profile: P }).violations).toEqual([]);
    const r = evaluateSync({ action: act(0.101), profile: P });
    expect(types(r.violations)).toEqual(["linear_velocity"]);
    expect(r.violations[0]?.severity).toBe("low");
    expect(r.violations[0]?.measured).toBeCloseTo(0.505, 9);
    expect(r.violations[0]?.limit).toBe(0.5);
  });
  it("uses the norm of the translation and maps the excess to a severity", () => {
    expect(evaluateSync({ action: act(0.06, 0.08), profile: P }).violations).toEqual([]); // |t| = 0.1
    expect(evaluateSync({ action: act(0.14), profile: P }).violations[0]?.severity).toBe("medium"); // +40%
    expect(evaluateSync({ action: act(0.19), profile: P }).violations[0]?.severity).toBe("high"); // +90%
    expect(evaluateSync({ action: act(0, 0, -0.25), profile: P }).violations[0]?.severity).toBe("critical"); // +150%
  });
  it("clamps by scaling the translation to the limit (low severity, default policy)", () => {
    const r = evaluateSync({ action: act(0.102, 0, 0, 0, 0, 0, 0.7), profile: P });
    expect(r.status).toBe("clamped");
    expect(r.action_taken).toBe("clamped");
    const a = r.action as number[];
    expect(Math.hypot(a[0] as number, a[1] as number, a[2] as number) * 5).toBeCloseTo(0.5, 9);
    expect(a[6]).toBe(0.7);
    expect(r.raw_action).toEqual(act(0.102, 0, 0, 0, 0, 0, 0.7));
  });
});

describe("control frequency", () => {
  it("the same delta is a higher velocity at a higher rate", () => {
    const fast = profile({ control_hz: 15 });
    expect(evaluateSync({ action: act(0.0333), profile: fast }).violations).toEqual([]); // 0.4995 m/s
    expect(evaluateSync({ action: act(0.034), profile: fast }).violations[0]?.type).toBe("linear_velocity"); // 0.51
  });
});

describe("angular velocity", () => {
  it("at, below and above the limit", () => {
    expect(evaluateSync({ action: act(0, 0, 0, 0.3), profile: P }).violations).toEqual([]);
    expect(evaluateSync({ action: act(0, 0, 0, 0, 0.299), profile: P }).violations).toEqual([]);
    const r = evaluateSync({ action: act(0, 0, 0, 0, 0, 0.303), profile: P });
    expect(types(r.violations)).toEqual(["angular_velocity"]);
    expect(r.violations[0]?.severity).toBe("low");
  });
  it("uses the norm of (droll, dpitch, dyaw)", () => {
    const r = evaluateSync({ action: act(0, 0, 0, 0.3, 0.3, 0), profile: P }); // 0.424 rad -> 2.12 rad/s, +41%
    expect(r.violations[0]?.severity).toBe("medium");
    expect(r.status).toBe("clamped");
    const a = r.action as number[];
    expect(Math.hypot(a[3] as number, a[4] as number, a[5] as number) * 5).toBeLessThanOrEqual(1.5 + 1e-9);
  });
});

describe("workspace", () => {
  const state = { ee_position: [0.45, 0, 0.3] };
  it("at, below and above the box", () => {
    expect(evaluateSync({ action: act(0.05), profile: P, robotState: state }).violations).toEqual([]);
    expect(evaluateSync({ action: act(0.049), profile: P, robotState: state }).violations).toEqual([]);
    const r = evaluateSync({ action: act(0.051), profile: P, robotState: state });
    expect(types(r.violations)).toEqual(["workspace"]);
    expect(r.violations[0]?.limit).toBe(0.5);
    expect(r.violations[0]?.measured).toBeCloseTo(0.501, 9);
    expect(r.violations[0]?.severity).toBe("low");
  });
  it("projects the target back inside", () => {
    const r = evaluateSync({ action: act(0.08, 0.01), profile: P, robotState: state });
    expect(r.status).toBe("clamped");
    const a = r.action as number[];
    expect(0.45 + (a[0] as number)).toBeCloseTo(0.5, 12);
    expect(a[1]).toBeCloseTo(0.01, 12);
  });
  it("is skipped and reported when no position is known", () => {
    const r = evaluateSync({ action: act(0.05), profile: P });
    expect(r.skipped).toContainEqual({ check: "workspace", reason: expect.stringContaining("ee_position") });
    const bad = evaluateSync({ action: act(0.05), profile: P, robotState: { ee_position: [0, Number.NaN, 0] } });
    expect(bad.skipped.map((s) => s.check)).toContain("workspace");
    expect(bad.status).toBe("pass");
  });
  it("rejects when the robot is already outside the box (no clamped step can be valid)", () => {
    const r = evaluateSync({ action: act(0.01), profile: P, robotState: { ee_position: [0.52, 0, 0.3] } });
    expect(r.violations[0]?.type).toBe("workspace");
    expect(r.status).toBe("rejected");
    expect(r.reason).toMatch(/clamping/);
  });
});

describe("acceleration", () => {
  it("at, below and above the linear limit", () => {
    const prev = act();
    expect(evaluateSync({ action: act(0.08), profile: P, previousAction: prev }).violations).toEqual([]);
    expect(evaluateSync({ action: act(0.079), profile: P, previousAction: prev }).violations).toEqual([]);
    const r = evaluateSync({ action: act(0.081), profile: P, previousAction: prev });
    expect(types(r.violations)).toEqual(["linear_acceleration"]);
    expect(r.violations[0]?.measured).toBeCloseTo(2.025, 9);
  });
  it("at, below and above the angular limit", () => {
    const prev = act(0, 0, 0, 0.1);
    expect(evaluateSync({ action: act(0, 0, 0, -0.14), profile: P, previousAction: prev }).violations).toEqual([]);
    expect(evaluateSync({ action: act(0, 0, 0, -0.13), profile: P, previousAction: prev }).violations).toEqual([]);
    const r = evaluateSync({ action: act(0, 0, 0, -0.15), profile: P, previousAction: prev });
    expect(types(r.violations)).toEqual(["angular_acceleration"]);
  });
  it("is skipped without a previous action", () => {
    const r = evaluateSync({ action: act(0.1), profile: P });
    expect(r.skipped.map((s) => s.check)).toContain("acceleration");
  });
  it("over a sequence: ramping up within the limit passes, a jump is clamped to the acceleration limit", () => {
    let prev: number[] | undefined;
    for (const dx of [0.02, 0.05, 0.08, 0.1, 0.1, 0.06]) {
      const r = evaluateSync({ action: act(dx), profile: P, previousAction: prev });
      expect(r.violations).toEqual([]);
      prev = r.action as number[];
    }
    // from 0.06 m/step to -0.06: |Δv| = 0.12*25 = 3 m/s² (+50%, medium) -> scaled to -0.02 (|Δ| = 0.08)
    const reversal = evaluateSync({ action: act(-0.06), profile: P, previousAction: prev });
    expect(types(reversal.violations)).toEqual(["linear_acceleration"]);
    expect(reversal.status).toBe("clamped");
    expect((reversal.action as number[])[0]).toBeCloseTo(-0.02, 9);
    // from 0.1 to -0.05: scaling -0.05 cannot work (even zero motion is 2.5 m/s²); the clamp
    // decelerates from the previous delta instead: 0.1 - 0.08 = 0.02 m, no longer than the raw 0.05
    const clampAll = profile({ policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" } });
    const turn = evaluateSync({ action: act(-0.05), profile: clampAll, previousAction: act(0.1) });
    expect(turn.status).toBe("clamped");
    expect((turn.action as number[])[0]).toBeCloseTo(0.02, 9);
    // a full stop from 0.1: the only motion no longer than the raw one is zero, which breaks the
    // acceleration limit: nothing satisfies every limit -> rejected
    const stop = evaluateSync({ action: act(0), profile: clampAll, previousAction: act(0.1) });
    expect(stop.status).toBe("rejected");
    expect(stop.reason).toMatch(/clamping could not/);
    // sideways at speed: blended toward the command within the acceleration limit
    const side = evaluateSync({ action: act(0, 0.1), profile: clampAll, previousAction: act(0.1) });
    expect(side.status).toBe("clamped");
    const sa = side.action as number[];
    expect(Math.hypot((sa[0] as number) - 0.1, sa[1] as number) * 25).toBeCloseTo(2, 9);
    // a jump in the same direction is clamped to prev + 0.08
    const jump = evaluateSync({ action: act(0.1), profile: P, previousAction: act(0.01) });
    expect(jump.violations[0]?.severity).toBe("medium"); // (0.09*25)/2 - 1 = 12.5 %
    expect(jump.status).toBe("clamped");
    expect((jump.action as number[])[0]).toBeCloseTo(0.09, 9);
  });
});

describe("collision risk", () => {
  const zones: KeepOutZone[] = [{ type: "sphere", center: [0.3, 0, 0.3], radius: 0.1 }];
  const prof = profile({ keep_out_zones: zones, zone_margin: 0.02 });
  const state = { ee_position: [0.1, 0, 0.3] };
  it("passes at the margin, high inside the margin, critical inside the zone", () => {
    expect(evaluateSync({ action: act(0.08), profile: prof, robotState: state }).violations).toEqual([]);
    expect(evaluateSync({ action: act(0.079), profile: prof, robotState: state }).violations).toEqual([]);
    const near = evaluateSync({ action: act(0.081), profile: prof, robotState: state });
    expect(types(near.violations)).toEqual(["collision"]);
    expect(near.violations[0]?.severity).toBe("high");
    expect(near.status).toBe("rejected");
    const inside = evaluateSync({ action: act(0.08), profile: prof, robotState: { ee_position: [0.15, 0, 0.3] } });
    expect(inside.violations[0]?.severity).toBe("critical");
    expect(inside.status).toBe("emergency_stop");
    expect(inside.action).toEqual([0, 0, 0, 0, 0, 0, 0.5]);
  });
  it("box zones: distance and clamping out of the zone", () => {
    const box: KeepOutZone = { type: "box", min: [0.2, -0.1, 0], max: [0.4, 0.1, 0.2] };
    expect(zoneDistance(box, 0.3, 0, 0.1)).toBeCloseTo(-0.1, 12);
    expect(zoneDistance(box, 0.5, 0, 0.1)).toBeCloseTo(0.1, 12);
    const clampAll = profile({
      keep_out_zones: [box],
      policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" },
    });
    const r = evaluateSync({ action: act(0.09), profile: clampAll, robotState: { ee_position: [0.1, 0, 0.1] } });
    expect(r.violations[0]?.type).toBe("collision");
    expect(r.status).toBe("clamped");
    expect(0.1 + ((r.action as number[])[0] as number)).toBeLessThanOrEqual(0.2 - 0.02 + 1e-9);
  });
  it("is skipped when no position is known", () => {
    expect(evaluateSync({ action: act(0.08), profile: prof }).skipped.map((s) => s.check)).toContain("collision");
  });
});

describe("gripper", () => {
  it.each([
    [1.0, undefined],
    [0.999, undefined],
    [0, undefined],
    [1.05, "low"],
    [-0.3, "medium"],
    [1.8, "high"],
    [2.5, "critical"],
  ] as const)("gripper %f -> %s", (g, sev) => {
    const r = evaluateSync({ action: act(0, 0, 0, 0, 0, 0, g), profile: P });
    expect(r.violations[0]?.severity).toBe(sev);
  });
  it("clips the gripper when clamping", () => {
    expect((evaluateSync({ action: act(0, 0, 0, 0, 0, 0, 1.05), profile: P }).action as number[])[6]).toBe(1);
  });
});

describe("invalid actions", () => {
  it.each([
    ["NaN", act(Number.NaN)],
    ["Infinity", act(0, 0, 0, 0, 0, Number.POSITIVE_INFINITY)],
    ["6-D", [0, 0, 0, 0, 0, 0]],
    ["8-D", [0, 0, 0, 0, 0, 0, 0, 0]],
    ["empty", []],
    ["string inside", [0, 0, "0", 0, 0, 0, 0]],
  ])("%s is critical and stops the robot under the default policy", (_n, a) => {
    const r = evaluateSync({ action: a as number[], profile: P, robotState: { gripper: 0.3 } });
    expect(r.violations[0]?.type).toBe("invalid_action");
    expect(r.violations[0]?.severity).toBe("critical");
    expect(r.status).toBe("emergency_stop");
    expect(r.action).toEqual([0, 0, 0, 0, 0, 0, 0.3]);
  });
  it("is rejected, not clamped, when the policy says clamp", () => {
    const prof = profile({ policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" } });
    const r = evaluateSync({ action: act(Number.NaN), profile: prof });
    expect(r.status).toBe("rejected");
    expect(r.action).toEqual([0, 0, 0, 0, 0, 0, 0.5]); // no state, no previous: the raw gripper, clipped
  });
  it("typed arrays are read like plain arrays", () => {
    const r = evaluateSync({
      action: new Float32Array([0.2, 0, 0, 0, 0, 0, 0.5]) as unknown as number[],
      profile: P,
      robotState: { ee_position: new Float64Array([0, 0, 0.3]) as unknown as number[] },
    });
    expect(r.violations.map((v) => v.type)).toEqual(["linear_velocity"]);
    const chunk = evaluateSync({
      action: [new Float32Array(7), new Float32Array(7)] as unknown as number[][],
      profile: P,
    });
    expect(chunk.status).toBe("pass");
    expect(chunk.violations).toEqual([]);
  });
  it("a bad step in a chunk invalidates the chunk", () => {
    const r = evaluateSync({ action: [act(0.01), act(0, Number.NaN)], profile: P });
    expect(r.violations).toHaveLength(1);
    expect(r.violations[0]?.step).toBe(1);
    expect(r.action).toEqual([act(0, 0, 0, 0, 0, 0, 0.5), act(0, 0, 0, 0, 0, 0, 0.5)]);
  });
});

describe("policy", () => {
  it("none reports without changing the action", () => {
    const prof = profile({ policy: { low: "none", medium: "none", high: "none", critical: "none" } });
    const r = evaluateSync({ action: act(0.5), profile: prof });
    expect(r.status).toBe("pass");
    expect(r.violations).toHaveLength(1);
    expect(r.action).toEqual(act(0.5));
  });
  it("the worst severity decides; reject keeps the gripper from robot_state", () => {
    const r = evaluateSync({
      action: act(0.101, 0, 0, 0, 0, 0, 0.9),
      profile: P,
      robotState: { gripper: 0.2 },
      previousAction: act(0, 0, 0, 0, 0, 0, 0.6),
    });
    // velocity low (+1%), acceleration critical-ish: |Δ|=0.101*25=2.525 -> +26% medium => clamp
    expect(r.status).toBe("clamped");
    const rej = evaluateSync({ action: act(0.19, 0, 0, 0, 0, 0, 0.9), profile: P, robotState: { gripper: 0.2 } });
    expect(rej.status).toBe("rejected");
    expect(rej.action).toEqual([0, 0, 0, 0, 0, 0, 0.2]);
    const noState = evaluateSync({
      action: act(0.19, 0, 0, 0, 0, 0, 0.9),
      profile: P,
      previousAction: act(0, 0, 0, 0, 0, 0, 0.6),
    });
    expect(noState.action).toEqual([0, 0, 0, 0, 0, 0, 0.6]);
  });
  it("notEvaluated", () => {
    expect(notEvaluated(act(), "safety disabled").status).toBe("not_evaluated");
  });
});

describe("chunks", () => {
  it("checks every step with positions accumulating along the chunk", () => {
    const chunk = [act(0.05), act(0.05), act(0.05)];
    const r = evaluateSync({ action: chunk, profile: P, robotState: { ee_position: [0.4, 0, 0.3] } });
    expect(r.violations.map((v) => [v.type, v.step])).toEqual([["workspace", 2]]);
    expect(r.status).toBe("clamped");
    const safe = r.action as number[][];
    expect(safe).toHaveLength(3);
    expect(safe[0]?.[0]).toBeCloseTo(0.05, 12);
    expect(safe[2]?.[0]).toBeCloseTo(0, 12);
  });
  it("checks acceleration between chunk steps and the previous action for the first", () => {
    const r = evaluateSync({ action: [act(0), act(0.1)], profile: P, previousAction: act(0.09) });
    expect(r.violations.map((v) => [v.type, v.step])).toEqual([
      ["linear_acceleration", 0],
      ["linear_acceleration", 1],
    ]);
  });
  it("rejects the whole chunk when the worst step says reject", () => {
    const r = evaluateSync({ action: [act(0.12), act(0.19)], profile: P }); // step 1: +90 % velocity (high)
    expect(r.status).toBe("rejected");
    expect(r.action).toEqual([act(0, 0, 0, 0, 0, 0, 0.5), act(0, 0, 0, 0, 0, 0, 0.5)]);
  });
});

// ---- Properties -----------------------------------------------------------------------------

const ZONES: KeepOutZone[] = [
  { type: "box", min: [0.2, -0.1, 0.0], max: [0.35, 0.1, 0.15] },
  { type: "sphere", center: [-0.2, 0.2, 0.3], radius: 0.08 },
];
const CLAMP_ALL = profile({
  keep_out_zones: ZONES,
  zone_margin: 0.02,
  policy: { low: "clamp", medium: "clamp", high: "clamp", critical: "clamp" },
});

/** An independent statement of every limit (not the evaluator's code). */
function limitProblems(
  prof: SafetyProfile,
  steps: number[][],
  start: number[] | undefined,
  prev: number[] | undefined,
  tol = 1e-6,
): string[] {
  const problems: string[] = [];
  let pos = start;
  let pr = prev;
  const hz = prof.control_hz;
  steps.forEach((a, i) => {
    const [dx, dy, dz, rx, ry, rz, g] = a as [number, number, number, number, number, number, number];
    if (Math.hypot(dx, dy, dz) * hz > prof.max_linear_velocity + tol) problems.push(`${i} lin vel`);
    if (Math.hypot(rx, ry, rz) * hz > prof.max_angular_velocity + tol) problems.push(`${i} ang vel`);
    if (pr !== undefined) {
      if (
        Math.hypot(dx - (pr[0] as number), dy - (pr[1] as number), dz - (pr[2] as number)) * hz * hz >
        prof.max_linear_acceleration + tol
      )
        problems.push(`${i} lin acc`);
      if (
        Math.hypot(rx - (pr[3] as number), ry - (pr[4] as number), rz - (pr[5] as number)) * hz * hz >
        prof.max_angular_acceleration + tol
      )
        problems.push(`${i} ang acc`);
    }
    if (g < prof.gripper[0] - tol || g > prof.gripper[1] + tol) problems.push(`${i} gripper`);
    if (pos !== undefined) {
      pos = [(pos[0] as number) + dx, (pos[1] as number) + dy, (pos[2] as number) + dz];
      const ranges = [prof.workspace.x, prof.workspace.y, prof.workspace.z];
      ranges.forEach(([lo, hi], k) => {
        const c = (pos as number[])[k] as number;
        if (c < lo - tol || c > hi + tol) problems.push(`${i} workspace`);
      });
      for (const z of prof.keep_out_zones) {
        if (zoneDistance(z, pos[0] as number, pos[1] as number, pos[2] as number) < prof.zone_margin - tol)
          problems.push(`${i} zone`);
      }
    }
    pr = a;
  });
  return problems;
}

const coord = (lo: number, hi: number) => fc.double({ min: lo, max: hi, noNaN: true });
const arbAction = fc
  .tuple(coord(-0.3, 0.3), coord(-0.3, 0.3), coord(-0.3, 0.3), coord(-1, 1), coord(-1, 1), coord(-1, 1), coord(-1, 2))
  .map((t) => [...t]);
const safeStart = fc
  .tuple(coord(-0.5, 0.5), coord(-0.5, 0.5), coord(0, 0.6))
  .map((t) => [...t])
  .filter((p) => ZONES.every((z) => zoneDistance(z, p[0] as number, p[1] as number, p[2] as number) >= 0.02 + 1e-3));

const norm = (a: readonly number[], o: number) => Math.hypot(a[o] as number, a[o + 1] as number, a[o + 2] as number);

describe("clamping properties (fast-check)", () => {
  it("a clamped single action satisfies every limit, never moves farther, and is always feasible without a previous action", () => {
    let clamped = 0;
    const seen = new Set<string>();
    fc.assert(
      fc.property(arbAction, safeStart, (a, start) => {
        const r = evaluateSync({ action: a, profile: CLAMP_ALL, robotState: { ee_position: start } });
        for (const v of r.violations) seen.add(v.type);
        expect(["pass", "clamped"]).toContain(r.status);
        const out = (r.status === "pass" ? a : r.action) as number[];
        expect(limitProblems(CLAMP_ALL, [out], start, undefined)).toEqual([]);
        expect(norm(out, 0)).toBeLessThanOrEqual(norm(a, 0) + 1e-12);
        expect(norm(out, 3)).toBeLessThanOrEqual(norm(a, 3) + 1e-12);
        if (r.status === "clamped") clamped++;
      }),
      { numRuns: 2000 },
    );
    expect(clamped).toBeGreaterThan(500); // the generator mostly produces violations
    // every clampable rule was exercised, zones included
    for (const t of ["linear_velocity", "angular_velocity", "workspace", "collision", "gripper"])
      expect(seen).toContain(t);
  });

  it("with a previous action: whenever the result is clamped, every limit holds (acceleration included)", () => {
    let clamped = 0;
    fc.assert(
      fc.property(arbAction, arbAction, safeStart, (a, prevRaw, start) => {
        const prev = prevRaw.map((x, i) => (i < 3 ? x / 4 : i < 6 ? x / 4 : x));
        const r = evaluateSync({
          action: a,
          profile: CLAMP_ALL,
          robotState: { ee_position: start },
          previousAction: prev,
        });
        if (r.status === "clamped") {
          clamped++;
          const out = r.action as number[];
          expect(limitProblems(CLAMP_ALL, [out], start, prev)).toEqual([]);
          expect(norm(out, 0)).toBeLessThanOrEqual(norm(a, 0) + 1e-12);
          expect(norm(out, 3)).toBeLessThanOrEqual(norm(a, 3) + 1e-12);
        } else if (r.status === "pass") {
          expect(limitProblems(CLAMP_ALL, [a], start, prev)).toEqual([]);
        } else {
          expect(r.status).toBe("rejected");
          expect(norm(r.action as number[], 0)).toBe(0);
        }
      }),
      { numRuns: 2000 },
    );
    expect(clamped).toBeGreaterThan(50);
  });

  it("a clamped chunk satisfies every limit at every step", () => {
    fc.assert(
      fc.property(fc.array(arbAction, { minLength: 1, maxLength: 8 }), safeStart, (chunk, start) => {
        const r = evaluateSync({ action: chunk, profile: CLAMP_ALL, robotState: { ee_position: start } });
        if (r.status === "clamped") {
          const out = r.action as number[][];
          expect(out).toHaveLength(chunk.length);
          expect(limitProblems(CLAMP_ALL, out, start, undefined)).toEqual([]);
          out.forEach((s, i) => {
            expect(norm(s, 0)).toBeLessThanOrEqual(norm(chunk[i] as number[], 0) + 1e-12);
          });
        } else if (r.status === "pass") {
          expect(limitProblems(CLAMP_ALL, chunk, start, undefined)).toEqual([]);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a passing action really is within every limit (no false negatives)", () => {
    fc.assert(
      fc.property(arbAction, safeStart, (a, start) => {
        const r = evaluateSync({ action: a, profile: CLAMP_ALL, robotState: { ee_position: start } });
        if (r.violations.length === 0) expect(limitProblems(CLAMP_ALL, [a], start, undefined)).toEqual([]);
        else expect(limitProblems(CLAMP_ALL, [a], start, undefined, 0).length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });
});

// ---- Classifiers ----------------------------------------------------------------------------

const never: SafetyClassifier = { name: "slow", classify: () => new Promise<ClassifierResult>(() => {}) };
const broken: SafetyClassifier = {
  name: "broken",
  classify: () => {
    throw new Error("model file missing");
  },
};
const rejecting: SafetyClassifier = { name: "rejecting", classify: () => Promise.reject(new Error("boom")) };
const risky = (risk: number): SafetyClassifier => ({
  name: "risky",
  classify: async () => ({ risk, label: "risky", reasons: ["test"] }),
});

describe("classifiers", () => {
  it("fail-closed: a timeout is a high-severity violation (rejected under the default policy)", async () => {
    const r = await evaluate({ action: act(0.01), profile: P }, { classifiers: [never], timeoutMs: 5 });
    expect(r.violations).toHaveLength(1);
    expect(r.violations[0]).toMatchObject({ type: "classifier", severity: "high" });
    expect(r.violations[0]?.message).toMatch(/timed out/);
    expect(r.status).toBe("rejected");
  });
  it("fail-open: a timeout is reported as skipped and the action passes", async () => {
    const r = await evaluate(
      { action: act(0.01), profile: P },
      { classifiers: [never], timeoutMs: 5, failMode: "open" },
    );
    expect(r.status).toBe("pass");
    expect(r.skipped).toContainEqual({
      check: "classifier:slow",
      reason: expect.stringMatching(/timed out.*fail-open/),
    });
  });
  it("errors (sync throw and rejected promise) follow the fail-safe too", async () => {
    for (const c of [broken, rejecting]) {
      const closed = await evaluate({ action: act(0.01), profile: P }, { classifiers: [c] });
      expect(closed.status).toBe("rejected");
      const open = await evaluate({ action: act(0.01), profile: P }, { classifiers: [c], failMode: "open" });
      expect(open.status).toBe("pass");
    }
  });
  it("risk below the threshold passes; above maps to a severity", async () => {
    expect((await evaluate({ action: act(), profile: P }, { classifiers: [risky(0.49)] })).status).toBe("pass");
    const r = await evaluate({ action: act(), profile: P }, { classifiers: [risky(0.95)] });
    expect(r.violations[0]?.severity).toBe("critical");
    expect(r.status).toBe("emergency_stop");
  });
  it("a classifier violation under a clamp policy is rejected (clamping cannot fix it)", async () => {
    const r = await evaluate({ action: act(), profile: P }, { classifiers: [risky(0.6)] });
    expect(r.violations[0]?.severity).toBe("medium");
    expect(r.status).toBe("rejected");
  });
  it("a classifier that cannot judge is reported as skipped", async () => {
    const unsure: SafetyClassifier = {
      name: "unsure",
      classify: () => ({ risk: 0, label: "n/a", reasons: [], skipped: "no statistics" }),
    };
    const r = await evaluate({ action: act(), profile: P }, { classifiers: [unsure] });
    expect(r.status).toBe("pass");
    expect(r.skipped).toContainEqual({ check: "classifier:unsure", reason: "no statistics" });
  });
  it("classifiers see the steps, state and context", async () => {
    let seen: unknown;
    const spy: SafetyClassifier = {
      name: "spy",
      classify: (ctx) => {
        seen = ctx;
        return { risk: 0, label: "ok", reasons: [] };
      },
    };
    const state = { ee_position: [0, 0, 0.3], ee_orientation: [0, 0, 0, 1], gripper: 1 };
    await evaluate(
      { action: [act(0.01), act(0.02)], profile: P, robotState: state },
      { classifiers: [spy], modelId: "m", unnormKey: "k" },
    );
    expect(seen).toMatchObject({ steps: [act(0.01), act(0.02)], robotState: state, modelId: "m", unnormKey: "k" });
  });
  it("an invalid action skips the classifiers", async () => {
    const r = await evaluate({ action: act(Number.NaN), profile: P }, { classifiers: [never], timeoutMs: 5 });
    expect(r.violations.map((v) => v.type)).toEqual(["invalid_action"]);
    expect(r.skipped.map((x) => x.check)).toContain("classifier");
  });
  it("rules and classifiers combine; evaluate without classifiers equals evaluateSync", async () => {
    const input = { action: act(0.12), profile: P, robotState: { ee_position: [0, 0, 0.3] } };
    expect(await evaluate(input, { classifiers: [] })).toEqual(evaluateSync(input));
  });
});
