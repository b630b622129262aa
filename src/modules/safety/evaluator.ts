import {
  ACTION_DIM,
  type KeepOutZone,
  type PolicyAction,
  type SafetyProfile,
  SEVERITIES,
  type Severity,
} from "./profile.ts";
import type {
  Action,
  ActionChunk,
  ActionTaken,
  ClassifierContext,
  ClassifierResult,
  EvaluationInput,
  RobotState,
  SafetyClassifier,
  SafetyResult,
  SkippedCheck,
  Violation,
  ViolationType,
} from "./types.ts";

/**
 * Severity from the excess ratio r = measured / limit - 1 (r > 0 means violated):
 * r <= 0.10 low, r <= 0.50 medium, r <= 1.00 high, beyond critical.
 */
export const SEVERITY_THRESHOLDS = { low: 0.1, medium: 0.5, high: 1.0 } as const;

export function severityFromExcess(ratio: number): Severity {
  if (!(ratio <= SEVERITY_THRESHOLDS.high)) return "critical"; // also NaN
  if (ratio <= SEVERITY_THRESHOLDS.low) return "low";
  if (ratio <= SEVERITY_THRESHOLDS.medium) return "medium";
  return "high";
}

/** Floating-point tolerance: a value at its limit (to 1e-9 relative / 1e-9 m) passes. */
const REL_TOL = 1e-9;
const ABS_TOL = 1e-9;
const exceeds = (measured: number, limit: number) => measured > limit * (1 + REL_TOL) + 1e-12;

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2, critical: 3 };
const NON_CLAMPABLE: ReadonlySet<ViolationType> = new Set(["invalid_action", "classifier"]);

export function worstSeverity(violations: readonly Violation[]): Severity | undefined {
  let worst = -1;
  for (const v of violations) worst = Math.max(worst, SEVERITY_RANK[v.severity]);
  return worst < 0 ? undefined : SEVERITIES[worst];
}

function isValidVector(v: unknown, dim: number): v is readonly number[] {
  if (!Array.isArray(v) || v.length !== dim) return false;
  for (let i = 0; i < dim; i++) {
    const x = v[i];
    if (typeof x !== "number" || !Number.isFinite(x)) return false;
  }
  return true;
}

const clip = (x: number, lo: number, hi: number) => Math.min(Math.max(x, lo), hi);
const norm3 = (a: number, b: number, c: number) => Math.sqrt(a * a + b * b + c * c);

/** Signed distance from a point to a zone (negative inside). */
export function zoneDistance(zone: KeepOutZone, x: number, y: number, z: number): number {
  if (zone.type === "sphere") {
    return norm3(x - zone.center[0], y - zone.center[1], z - zone.center[2]) - zone.radius;
  }
  const dx = Math.max(zone.min[0] - x, x - zone.max[0]);
  const dy = Math.max(zone.min[1] - y, y - zone.max[1]);
  const dz = Math.max(zone.min[2] - z, z - zone.max[2]);
  const outside = norm3(Math.max(dx, 0), Math.max(dy, 0), Math.max(dz, 0));
  return outside > 0 ? outside : Math.max(dx, dy, dz);
}

interface StepScan {
  /** Position after the step, or undefined when unknown. */
  readonly next: [number, number, number] | undefined;
}

const AXES = ["x", "y", "z"] as const;

/**
 * The rules for one valid step. `pos` is the position before the step (undefined: unknown),
 * `prev` the previous step's action (undefined: none). Pushes violations; returns the predicted position.
 */
function checkStep(
  a: readonly number[],
  step: number,
  pos: readonly number[] | undefined,
  prev: readonly number[] | undefined,
  p: SafetyProfile,
  out: Violation[],
): StepScan {
  const hz = p.control_hz;
  const tx = a[0] as number;
  const ty = a[1] as number;
  const tz = a[2] as number;
  const rx = a[3] as number;
  const ry = a[4] as number;
  const rz = a[5] as number;
  const g = a[6] as number;

  const lin = norm3(tx, ty, tz) * hz;
  if (exceeds(lin, p.max_linear_velocity)) {
    out.push(limitViolation("linear_velocity", lin, p.max_linear_velocity, step, "m/s"));
  }
  const ang = norm3(rx, ry, rz) * hz;
  if (exceeds(ang, p.max_angular_velocity)) {
    out.push(limitViolation("angular_velocity", ang, p.max_angular_velocity, step, "rad/s"));
  }
  if (prev !== undefined) {
    const hz2 = hz * hz;
    const la = norm3(tx - (prev[0] as number), ty - (prev[1] as number), tz - (prev[2] as number)) * hz2;
    if (exceeds(la, p.max_linear_acceleration)) {
      out.push(limitViolation("linear_acceleration", la, p.max_linear_acceleration, step, "m/s²"));
    }
    const aa = norm3(rx - (prev[3] as number), ry - (prev[4] as number), rz - (prev[5] as number)) * hz2;
    if (exceeds(aa, p.max_angular_acceleration)) {
      out.push(limitViolation("angular_acceleration", aa, p.max_angular_acceleration, step, "rad/s²"));
    }
  }
  const [glo, ghi] = p.gripper;
  if (g < glo - ABS_TOL || g > ghi + ABS_TOL) {
    const bound = g < glo ? glo : ghi;
    out.push({
      type: "gripper",
      severity: severityFromExcess(Math.abs(g - bound) / (ghi - glo)),
      measured: g,
      limit: bound,
      step,
      message: `gripper ${fmt(g)} outside [${glo}, ${ghi}]`,
    });
  }
  if (pos === undefined) return { next: undefined };
  const nx = (pos[0] as number) + tx;
  const ny = (pos[1] as number) + ty;
  const nz = (pos[2] as number) + tz;
  const target = [nx, ny, nz] as const;
  // Workspace: the worst axis; excess ratio = distance outside / half the axis span.
  let worstRatio = 0;
  let worstAxis = -1;
  for (let i = 0; i < 3; i++) {
    const [lo, hi] = p.workspace[AXES[i] as "x"];
    const c = target[i] as number;
    const outside = c < lo - ABS_TOL ? lo - c : c > hi + ABS_TOL ? c - hi : 0;
    if (outside > 0) {
      const r = outside / ((hi - lo) / 2);
      if (r > worstRatio) {
        worstRatio = r;
        worstAxis = i;
      }
    }
  }
  if (worstAxis >= 0) {
    const [lo, hi] = p.workspace[AXES[worstAxis] as "x"];
    const c = target[worstAxis] as number;
    const bound = c < lo ? lo : hi;
    out.push({
      type: "workspace",
      severity: severityFromExcess(worstRatio),
      measured: c,
      limit: bound,
      step,
      message: `predicted ${AXES[worstAxis]} = ${fmt(c)} m outside [${lo}, ${hi}]`,
    });
  }
  const margin = p.zone_margin;
  for (let i = 0; i < p.keep_out_zones.length; i++) {
    const zone = p.keep_out_zones[i] as KeepOutZone;
    const d = zoneDistance(zone, nx, ny, nz);
    if (d < -ABS_TOL) {
      out.push({
        type: "collision",
        severity: "critical",
        measured: d,
        limit: margin,
        step,
        message: `predicted position inside keep-out zone ${i} (${zone.type}), ${fmt(-d)} m deep`,
      });
    } else if (d < margin - ABS_TOL) {
      out.push({
        type: "collision",
        severity: "high",
        measured: d,
        limit: margin,
        step,
        message: `predicted position ${fmt(d)} m from keep-out zone ${i} (${zone.type}), within the ${margin} m margin`,
      });
    }
  }
  return { next: [nx, ny, nz] };
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(4);
}

function limitViolation(type: ViolationType, measured: number, limit: number, step: number, unit: string): Violation {
  return {
    type,
    severity: severityFromExcess(measured / limit - 1),
    measured,
    limit,
    step,
    message: `${type.replace("_", " ")} ${fmt(measured)} ${unit} exceeds ${limit} ${unit}`,
  };
}

/** Typed arrays (e.g. a decoded Float32Array action) as plain arrays; anything else unchanged. */
function plain(v: unknown): unknown {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v;
}

/** The parsed input: steps, whether it is a chunk, starting position, previous action. */
interface Prepared {
  readonly isChunk: boolean;
  readonly steps: readonly (readonly number[])[];
  readonly valid: boolean;
  readonly start: readonly number[] | undefined;
  readonly prev: readonly number[] | undefined;
  readonly violations: Violation[];
  readonly skipped: SkippedCheck[];
}

function prepare(input: EvaluationInput): Prepared {
  const raw = plain(input.action as unknown);
  const violations: Violation[] = [];
  const skipped: SkippedCheck[] = [];
  const isChunk = Array.isArray(raw) && raw.length > 0 && (Array.isArray(raw[0]) || ArrayBuffer.isView(raw[0]));
  const steps = (isChunk ? (raw as unknown[]).map(plain) : [raw]) as readonly (readonly number[])[];
  let valid = Array.isArray(raw) && raw.length > 0;
  if (!valid) {
    violations.push({
      type: "invalid_action",
      severity: "critical",
      measured: 0,
      limit: ACTION_DIM,
      step: 0,
      message: "action is empty or not an array",
    });
  } else {
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i] as unknown;
      if (isValidVector(s, ACTION_DIM)) continue;
      valid = false;
      const arr = Array.isArray(s) ? (s as unknown[]) : [];
      const bad = arr.filter((x) => typeof x !== "number" || !Number.isFinite(x)).length;
      const dimOk = arr.length === ACTION_DIM;
      violations.push({
        type: "invalid_action",
        severity: "critical",
        measured: dimOk ? bad : arr.length,
        limit: dimOk ? 0 : ACTION_DIM,
        step: i,
        message: dimOk
          ? `${bad} non-finite value(s) in the action`
          : `action has ${Array.isArray(s) ? arr.length : "no"} dimension(s), expected ${ACTION_DIM}`,
      });
    }
  }
  const state = input.robotState;
  let start: readonly number[] | undefined;
  if (state?.ee_position !== undefined) {
    const ee = plain(state.ee_position);
    if (isValidVector(ee, 3)) start = ee;
    else skipped.push({ check: "workspace", reason: "robot_state.ee_position is not 3 finite numbers" });
  }
  let prev: readonly number[] | undefined;
  const pa = input.previousAction;
  if (pa !== undefined && pa !== null) {
    if (isValidVector(pa, ACTION_DIM)) prev = pa;
    else if (valid) skipped.push({ check: "acceleration", reason: "previous action is not a finite 7-D action" });
  }
  if (!valid) {
    skipped.push({ check: "rules", reason: "invalid action: no other rule evaluated" });
  } else {
    if (start === undefined) {
      if (state?.ee_position === undefined) {
        skipped.push({ check: "workspace", reason: "no robot_state.ee_position: predicted position unknown" });
      }
      if (input.profile.keep_out_zones.length > 0) {
        skipped.push({ check: "collision", reason: "no robot_state.ee_position: predicted position unknown" });
      }
    }
    if (prev === undefined && pa == null) {
      skipped.push({
        check: "acceleration",
        reason: steps.length > 1 ? "no previous action: first chunk step not checked" : "no previous action",
      });
    }
  }
  return { isChunk, steps, valid, start, prev, violations, skipped };
}

/** Run the rules over valid steps (positions accumulate along the chunk). */
function scan(
  steps: readonly (readonly number[])[],
  start: readonly number[] | undefined,
  prev: readonly number[] | undefined,
  p: SafetyProfile,
  out: Violation[],
): void {
  let pos = start;
  let pr = prev;
  for (let i = 0; i < steps.length; i++) {
    const a = steps[i] as readonly number[];
    pos = checkStep(a, i, pos, pr, p, out).next;
    pr = a;
  }
}

function gripperHold(input: EvaluationInput, prep: Prepared): number {
  const [lo, hi] = input.profile.gripper;
  const g = input.robotState?.gripper;
  if (typeof g === "number" && Number.isFinite(g)) return clip(g, lo, hi);
  if (prep.prev !== undefined) return clip(prep.prev[6] as number, lo, hi);
  const raw = prep.steps[0]?.[6];
  if (typeof raw === "number" && Number.isFinite(raw)) return clip(raw, lo, hi);
  return lo;
}

/**
 * Largest s in [lo, hi] with |s*d - c| <= R (d, c 3-vectors), or an empty interval.
 * Returns [lo', hi'] (lo' > hi' when empty).
 */
function ballInterval(d: readonly number[], c: readonly number[], R: number): [number, number] {
  const dd = (d[0] as number) ** 2 + (d[1] as number) ** 2 + (d[2] as number) ** 2;
  const cc = (c[0] as number) ** 2 + (c[1] as number) ** 2 + (c[2] as number) ** 2;
  if (dd === 0) return cc <= R * R ? [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY] : [1, 0];
  const b =
    (d[0] as number) * (c[0] as number) + (d[1] as number) * (c[1] as number) + (d[2] as number) * (c[2] as number);
  const disc = b * b - dd * (cc - R * R);
  if (disc < 0) return [1, 0];
  const sq = Math.sqrt(disc);
  return [(b - sq) / dd, (b + sq) / dd];
}

/** Open interval of s where pos + s*d is strictly inside the zone inflated by margin (a box is inflated as a box: conservative). */
function zoneInterval(
  zone: KeepOutZone,
  pos: readonly number[],
  d: readonly number[],
  margin: number,
): [number, number] {
  if (zone.type === "sphere") {
    const c = [
      zone.center[0] - (pos[0] as number),
      zone.center[1] - (pos[1] as number),
      zone.center[2] - (pos[2] as number),
    ];
    return ballInterval(d, c, zone.radius + margin);
  }
  let enter = Number.NEGATIVE_INFINITY;
  let exit = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const lo = (zone.min[i] as number) - margin - (pos[i] as number);
    const hi = (zone.max[i] as number) + margin - (pos[i] as number);
    const di = d[i] as number;
    if (di === 0) {
      if (lo >= 0 || hi <= 0) return [1, 0];
      continue;
    }
    const a = lo / di;
    const b = hi / di;
    enter = Math.max(enter, Math.min(a, b));
    exit = Math.min(exit, Math.max(a, b));
  }
  return enter < exit ? [enter, exit] : [1, 0];
}

/** Largest s in [lo, hi] outside every open interval; undefined when none. */
function largestOutside(lo: number, hi: number, holes: readonly [number, number][]): number | undefined {
  const candidates = [hi];
  for (const [a, b] of holes) {
    if (a >= lo && a <= hi) candidates.push(a);
    if (b >= lo && b <= hi) candidates.push(b);
  }
  candidates.sort((x, y) => y - x);
  for (const s of candidates) {
    if (s < lo) break;
    if (!holes.some(([a, b]) => s > a && s < b)) return s;
  }
  return undefined;
}

/**
 * Fallback when scaling along the commanded direction cannot meet the acceleration limit (e.g. a
 * sharp turn at speed): move from the previous step's delta toward the commanded one,
 * x = prev + l * (target - prev), l in [0, 1] as large as every limit allows (acceleration,
 * velocity, never longer than the raw delta, workspace and zones for a translation).
 */
function blendFromPrevious(
  target: readonly number[],
  prevV: readonly number[],
  maxStep: number,
  maxChange: number,
  rawNorm: number,
  pos: readonly number[] | undefined,
  p: SafetyProfile,
): number[] | undefined {
  const d = [
    (target[0] as number) - (prevV[0] as number),
    (target[1] as number) - (prevV[1] as number),
    (target[2] as number) - (prevV[2] as number),
  ];
  const dn = norm3(d[0] as number, d[1] as number, d[2] as number);
  if (dn === 0) return undefined;
  const neg = [-(prevV[0] as number), -(prevV[1] as number), -(prevV[2] as number)];
  let lo = 0;
  let hi = Math.min(1, maxChange / dn);
  for (const radius of [maxStep, rawNorm]) {
    const [a, b] = ballInterval(d, neg, radius);
    lo = Math.max(lo, a);
    hi = Math.min(hi, b);
  }
  if (pos !== undefined) {
    for (let i = 0; i < 3; i++) {
      const [wlo, whi] = p.workspace[AXES[i] as "x"];
      const base = (pos[i] as number) + (prevV[i] as number);
      const di = d[i] as number;
      if (di === 0) {
        if (base < wlo || base > whi) return undefined;
        continue;
      }
      const a = (wlo - base) / di;
      const b = (whi - base) / di;
      lo = Math.max(lo, Math.min(a, b));
      hi = Math.min(hi, Math.max(a, b));
    }
  }
  if (lo > hi) return undefined;
  let l = hi;
  if (pos !== undefined && p.keep_out_zones.length > 0) {
    const base = [0, 1, 2].map((i) => (pos[i] as number) + (prevV[i] as number));
    const holes = p.keep_out_zones.map((z) => zoneInterval(z, base, d, p.zone_margin)).filter(([x, y]) => x < y);
    const best = largestOutside(lo, hi, holes);
    if (best === undefined) return undefined;
    l = best;
  }
  return [0, 1, 2].map((i) => (prevV[i] as number) + l * (d[i] as number));
}

/** Translation: scale along the (workspace-projected) direction; undefined when infeasible. */
function scaleTranslation(
  t: readonly number[],
  pos: readonly number[] | undefined,
  prevT: readonly number[] | undefined,
  p: SafetyProfile,
): number[] | undefined {
  const hz = p.control_hz;
  const tn = norm3(t[0] as number, t[1] as number, t[2] as number);
  let lo = 0;
  let hi = tn * hz > p.max_linear_velocity ? p.max_linear_velocity / (tn * hz) : 1;
  if (prevT !== undefined) {
    const [alo, ahi] = ballInterval(t, prevT, p.max_linear_acceleration / (hz * hz));
    lo = Math.max(lo, alo);
    hi = Math.min(hi, ahi);
    if (lo > hi) return undefined;
  }
  let s = hi;
  if (pos !== undefined && p.keep_out_zones.length > 0 && tn > 0) {
    const holes = p.keep_out_zones.map((z) => zoneInterval(z, pos, t, p.zone_margin)).filter(([x, y]) => x < y);
    const startsInside = holes.some(([x, y]) => 0 > x && 0 < y);
    if (!startsInside) for (const [x] of holes) if (x >= 0) hi = Math.min(hi, x); // never cross a zone
    if (lo > hi) return undefined;
    const best = largestOutside(lo, hi, holes);
    if (best === undefined) return undefined;
    s = best;
  }
  return [(t[0] as number) * s, (t[1] as number) * s, (t[2] as number) * s];
}

/** Rotation: scale for angular velocity and acceleration; undefined when infeasible. */
function scaleRotation(
  r: readonly number[],
  prevR: readonly number[] | undefined,
  p: SafetyProfile,
): number[] | undefined {
  const hz = p.control_hz;
  const rn = norm3(r[0] as number, r[1] as number, r[2] as number);
  let lo = 0;
  let hi = rn * hz > p.max_angular_velocity ? p.max_angular_velocity / (rn * hz) : 1;
  if (prevR !== undefined) {
    const [alo, ahi] = ballInterval(r, prevR, p.max_angular_acceleration / (hz * hz));
    lo = Math.max(lo, alo);
    hi = Math.min(hi, ahi);
    if (lo > hi) return undefined;
  }
  return [(r[0] as number) * hi, (r[1] as number) * hi, (r[2] as number) * hi];
}

/** Clamp one step; returns undefined when the limits cannot be met. */
function clampStep(
  a: readonly number[],
  pos: readonly number[] | undefined,
  prev: readonly number[] | undefined,
  p: SafetyProfile,
): number[] | undefined {
  const hz = p.control_hz;
  const raw = [a[0] as number, a[1] as number, a[2] as number];
  const t = raw.slice();
  // 1. Project the target back inside the workspace (per axis; never lengthens a component).
  if (pos !== undefined) {
    for (let i = 0; i < 3; i++) {
      const [lo, hi] = p.workspace[AXES[i] as "x"];
      const c = pos[i] as number;
      if (c < lo || c > hi) return undefined; // already outside: no single clamped step is guaranteed valid
      t[i] = clip(c + (t[i] as number), lo, hi) - c;
    }
  }
  const prevT = prev === undefined ? undefined : [prev[0] as number, prev[1] as number, prev[2] as number];
  const prevR = prev === undefined ? undefined : [prev[3] as number, prev[4] as number, prev[5] as number];
  // 2. Translation: scale along the direction, else (acceleration) blend from the previous delta.
  const tc =
    scaleTranslation(t, pos, prevT, p) ??
    (prevT === undefined
      ? undefined
      : blendFromPrevious(
          t,
          prevT,
          p.max_linear_velocity / hz,
          p.max_linear_acceleration / (hz * hz),
          norm3(raw[0] as number, raw[1] as number, raw[2] as number),
          pos,
          p,
        ));
  if (tc === undefined) return undefined;
  // 3. Rotation, the same way without position constraints.
  const r = [a[3] as number, a[4] as number, a[5] as number];
  const rc =
    scaleRotation(r, prevR, p) ??
    (prevR === undefined
      ? undefined
      : blendFromPrevious(
          r,
          prevR,
          p.max_angular_velocity / hz,
          p.max_angular_acceleration / (hz * hz),
          norm3(r[0] as number, r[1] as number, r[2] as number),
          undefined,
          p,
        ));
  if (rc === undefined) return undefined;
  const [glo, ghi] = p.gripper;
  return [
    tc[0] as number,
    tc[1] as number,
    tc[2] as number,
    rc[0] as number,
    rc[1] as number,
    rc[2] as number,
    clip(a[6] as number, glo, ghi),
  ];
}

function clampAll(prep: Prepared, p: SafetyProfile): number[][] | undefined {
  const out: number[][] = [];
  let pos = prep.start;
  let prev = prep.prev;
  for (const a of prep.steps) {
    const c = clampStep(a, pos, prev, p);
    if (c === undefined) return undefined;
    out.push(c);
    if (pos !== undefined)
      pos = [
        (pos[0] as number) + (c[0] as number),
        (pos[1] as number) + (c[1] as number),
        (pos[2] as number) + (c[2] as number),
      ];
    prev = c;
  }
  return out;
}

const TAKEN: Readonly<Record<PolicyAction, ActionTaken>> = {
  none: "none",
  clamp: "clamped",
  reject: "rejected",
  emergency_stop: "emergency_stop",
};

/** Apply the profile policy to the violations found; builds the safe action. */
function decide(
  input: EvaluationInput,
  prep: Prepared,
  violations: Violation[],
  skipped: SkippedCheck[],
): SafetyResult {
  const raw = input.action;
  const worst = worstSeverity(violations);
  if (worst === undefined) {
    return { status: "pass", violations, action_taken: "none", raw_action: raw, action: raw, skipped };
  }
  let policy = input.profile.policy[worst];
  let reason: string | undefined;
  if (policy === "none") {
    return {
      status: "pass",
      violations,
      action_taken: "none",
      raw_action: raw,
      action: raw,
      skipped,
      reason: `policy for ${worst} is none: violations reported, action unchanged`,
    };
  }
  if (policy === "clamp") {
    const fixed = violations.find((v) => NON_CLAMPABLE.has(v.type));
    if (fixed !== undefined) {
      policy = "reject";
      reason = `${fixed.type} violation cannot be clamped: ${fixed.message}`;
    } else {
      const clamped = clampAll(prep, input.profile);
      if (clamped !== undefined) {
        const check: Violation[] = [];
        scan(clamped, prep.start, prep.prev, input.profile, check);
        if (check.length === 0) {
          return {
            status: "clamped",
            violations,
            action_taken: "clamped",
            raw_action: raw,
            action: prep.isChunk ? clamped : (clamped[0] as number[]),
            skipped,
          };
        }
        reason = `clamping could not satisfy every limit (${check[0]?.message})`;
      } else {
        reason = "clamping could not satisfy every limit (infeasible by scaling)";
      }
      policy = "reject";
    }
  }
  const g = gripperHold(input, prep);
  const zero = [0, 0, 0, 0, 0, 0, g];
  const action = prep.isChunk ? prep.steps.map(() => zero.slice()) : zero;
  const first = violations.reduce((w, v) => (SEVERITY_RANK[v.severity] > SEVERITY_RANK[w.severity] ? v : w));
  const taken = TAKEN[policy];
  return {
    status: taken === "rejected" ? "rejected" : "emergency_stop",
    violations,
    action_taken: taken,
    raw_action: raw,
    action,
    skipped,
    reason: reason ?? `${worst}: ${first.message}`,
  };
}

/** The rules only, synchronously (microseconds). */
export function evaluateSync(input: EvaluationInput): SafetyResult {
  const prep = prepare(input);
  const violations = prep.violations;
  if (prep.valid) scan(prep.steps, prep.start, prep.prev, input.profile, violations);
  return decide(input, prep, violations, prep.skipped);
}

export interface ClassifierOptions {
  readonly classifiers: readonly SafetyClassifier[];
  /** Per classifier, default 50 ms. */
  readonly timeoutMs?: number;
  /** closed (default): a timeout or error is a violation of `failSeverity`; open: reported in `skipped`. */
  readonly failMode?: "closed" | "open";
  readonly failSeverity?: Severity;
  /** Risk at or above which a result is a violation (default 0.5). */
  readonly riskThreshold?: number;
  readonly modelId?: string | undefined;
  readonly unnormKey?: string | undefined;
}

/** Severity of a flagged risk without an explicit severity: < 0.75 medium, < 0.9 high, else critical. */
export function severityFromRisk(risk: number): Severity {
  if (risk >= 0.9) return "critical";
  if (risk >= 0.75) return "high";
  return "medium";
}

type RunOutcome =
  | { readonly kind: "ok"; readonly result: ClassifierResult }
  | { readonly kind: "timeout" }
  | { readonly kind: "error"; readonly error: unknown };
const TIMED_OUT: RunOutcome = { kind: "timeout" };

async function runOne(c: SafetyClassifier, ctx: ClassifierContext, timeoutMs: number): Promise<RunOutcome> {
  let r: Promise<ClassifierResult> | ClassifierResult;
  try {
    r = c.classify(ctx);
  } catch (error) {
    return { kind: "error", error };
  }
  if (!(r instanceof Promise)) return { kind: "ok", result: r };
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      r.then((result): RunOutcome => ({ kind: "ok", result })),
      new Promise<RunOutcome>((resolve) => {
        timer = setTimeout(() => resolve(TIMED_OUT), timeoutMs);
      }),
    ]);
  } catch (error) {
    return { kind: "error", error };
  } finally {
    clearTimeout(timer);
  }
}

/** The rules plus the classifiers (run in parallel, each with a timeout and the fail-safe). */
export async function evaluate(input: EvaluationInput, options: ClassifierOptions): Promise<SafetyResult> {
  const prep = prepare(input);
  const violations = prep.violations;
  const skipped = prep.skipped;
  if (prep.valid) scan(prep.steps, prep.start, prep.prev, input.profile, violations);
  if (options.classifiers.length > 0) {
    if (!prep.valid) skipped.push({ check: "classifier", reason: "invalid action" });
    else {
      const ctx: ClassifierContext = {
        steps: prep.steps,
        profile: input.profile,
        robotState: input.robotState,
        previousAction: prep.prev,
        modelId: options.modelId,
        unnormKey: options.unnormKey,
      };
      const timeoutMs = options.timeoutMs ?? 50;
      const threshold = options.riskThreshold ?? 0.5;
      const failClosed = (options.failMode ?? "closed") === "closed";
      const results =
        options.classifiers.length === 1
          ? [await runOne(options.classifiers[0] as SafetyClassifier, ctx, timeoutMs)]
          : await Promise.all(options.classifiers.map((c) => runOne(c, ctx, timeoutMs)));
      for (let i = 0; i < results.length; i++) {
        const name = (options.classifiers[i] as SafetyClassifier).name;
        const o = results[i];
        if (o === undefined || o.kind !== "ok") {
          const what = o?.kind === "timeout" ? `timed out after ${timeoutMs} ms` : `failed: ${errorMessage(o)}`;
          if (failClosed) {
            violations.push({
              type: "classifier",
              severity: options.failSeverity ?? "high",
              measured: 1,
              limit: threshold,
              step: 0,
              message: `classifier ${name} ${what} (fail-closed)`,
            });
          } else skipped.push({ check: `classifier:${name}`, reason: `${what} (fail-open)` });
          continue;
        }
        const r = o.result;
        if (r.skipped !== undefined) {
          skipped.push({ check: `classifier:${name}`, reason: r.skipped });
          continue;
        }
        if (!(r.risk >= threshold)) continue;
        violations.push({
          type: "classifier",
          severity: r.severity ?? severityFromRisk(r.risk),
          measured: r.measured ?? r.risk,
          limit: r.limit ?? threshold,
          step: 0,
          message: `classifier ${name}: ${r.label}${r.reasons.length > 0 ? ` (${r.reasons.join("; ")})` : ""}`,
        });
      }
    }
  }
  return decide(input, prep, violations, skipped);
}

function errorMessage(o: RunOutcome | undefined): string {
  if (o === undefined || o.kind !== "error") return "no result";
  return o.error instanceof Error ? o.error.message : String(o.error);
}

/** A result for when evaluation did not run at all (e.g. safety disabled for the request). */
export function notEvaluated(action: Action | ActionChunk, reason: string): SafetyResult {
  return {
    status: "not_evaluated",
    violations: [],
    action_taken: "none",
    raw_action: action,
    action,
    skipped: [{ check: "all", reason }],
    reason,
  };
}

export type { RobotState };
