import { decodeSketch, encodeSketch, Sketch } from "./sketch.ts";

/** One inference_logs row as the analytics job reads it. */
export interface LogFact {
  readonly id: string;
  readonly atMs: number;
  readonly customerId: string;
  readonly apiKeyId: string | null;
  readonly model: string;
  readonly robotId: string | null;
  readonly source: string;
  readonly instruction: string | null;
  readonly instructionKey: string | null;
  readonly status: string;
  readonly errorCode: string | null;
  readonly totalMs: number;
  readonly modelMs: number | null;
  readonly queueMs: number | null;
  readonly safetyStatus: string | null;
}

/** One feedback row, with the attributes of the inference it is about (counted in the inference's buckets). */
export interface FeedbackFact {
  readonly customerId: string;
  readonly inferenceAtMs: number;
  readonly robotId: string | null;
  readonly model: string;
  readonly source: string | null;
  readonly apiKeyId: string | null;
  readonly instructionKey: string | null;
  readonly type: string;
  readonly rating: number | null;
  readonly errorTranslation: number | null;
  readonly errorRotation: number | null;
  readonly errorGripper: number | null;
}

/** The additive measures of one rollup row (sums and sketches, so rows merge over any range). */
export interface Measures {
  requests: number;
  errors: number;
  errorsByCode: Record<string, number>;
  safetyPass: number;
  safetyClamped: number;
  safetyRejected: number;
  safetyEmergencyStop: number;
  latencyTotal: Sketch;
  latencyModel: Sketch;
  latencyQueue: Sketch;
  feedbackCount: number;
  successRatingSum: number;
  successRatingCount: number;
  safetyRatingSum: number;
  safetyRatingCount: number;
  corrections: number;
  correctionTranslationSum: number;
  correctionRotationSum: number;
  correctionGripperSum: number;
  failures: number;
  firstSeen: Date | null;
  lastSeen: Date | null;
}

export function emptyMeasures(): Measures {
  return {
    requests: 0,
    errors: 0,
    errorsByCode: {},
    safetyPass: 0,
    safetyClamped: 0,
    safetyRejected: 0,
    safetyEmergencyStop: 0,
    latencyTotal: new Sketch(),
    latencyModel: new Sketch(),
    latencyQueue: new Sketch(),
    feedbackCount: 0,
    successRatingSum: 0,
    successRatingCount: 0,
    safetyRatingSum: 0,
    safetyRatingCount: 0,
    corrections: 0,
    correctionTranslationSum: 0,
    correctionRotationSum: 0,
    correctionGripperSum: 0,
    failures: 0,
    firstSeen: null,
    lastSeen: null,
  };
}

const minDate = (a: Date | null, b: Date | null) => (a === null ? b : b === null || a <= b ? a : b);
const maxDate = (a: Date | null, b: Date | null) => (a === null ? b : b === null || a >= b ? a : b);

/**
 * Counts one request. Latency sketches hold successful requests only (a 400 answered in 0.1 ms
 * would otherwise pull p50 down); errors are counted by code.
 */
export function addLog(m: Measures, r: LogFact): void {
  m.requests++;
  if (r.status === "error") {
    m.errors++;
    const code = r.errorCode ?? "unknown";
    m.errorsByCode[code] = (m.errorsByCode[code] ?? 0) + 1;
  } else {
    m.latencyTotal.add(r.totalMs);
    if (r.modelMs !== null) m.latencyModel.add(r.modelMs);
    if (r.queueMs !== null) m.latencyQueue.add(r.queueMs);
  }
  switch (r.safetyStatus) {
    case "pass":
      m.safetyPass++;
      break;
    case "clamped":
      m.safetyClamped++;
      break;
    case "rejected":
      m.safetyRejected++;
      break;
    case "emergency_stop":
      m.safetyEmergencyStop++;
      break;
    default:
      break;
  }
  const at = new Date(r.atMs);
  m.firstSeen = minDate(m.firstSeen, at);
  m.lastSeen = maxDate(m.lastSeen, at);
}

export function addFeedback(m: Measures, f: FeedbackFact): void {
  m.feedbackCount++;
  switch (f.type) {
    case "success":
      if (f.rating !== null) {
        m.successRatingSum += f.rating;
        m.successRatingCount++;
      }
      break;
    case "safety":
      if (f.rating !== null) {
        m.safetyRatingSum += f.rating;
        m.safetyRatingCount++;
      }
      break;
    case "correction":
      m.corrections++;
      m.correctionTranslationSum += f.errorTranslation ?? 0;
      m.correctionRotationSum += f.errorRotation ?? 0;
      m.correctionGripperSum += f.errorGripper ?? 0;
      break;
    case "failure":
      m.failures++;
      break;
    default:
      break;
  }
}

export function mergeMeasures(into: Measures, m: Measures): Measures {
  into.requests += m.requests;
  into.errors += m.errors;
  for (const [code, n] of Object.entries(m.errorsByCode)) into.errorsByCode[code] = (into.errorsByCode[code] ?? 0) + n;
  into.safetyPass += m.safetyPass;
  into.safetyClamped += m.safetyClamped;
  into.safetyRejected += m.safetyRejected;
  into.safetyEmergencyStop += m.safetyEmergencyStop;
  into.latencyTotal.merge(m.latencyTotal);
  into.latencyModel.merge(m.latencyModel);
  into.latencyQueue.merge(m.latencyQueue);
  into.feedbackCount += m.feedbackCount;
  into.successRatingSum += m.successRatingSum;
  into.successRatingCount += m.successRatingCount;
  into.safetyRatingSum += m.safetyRatingSum;
  into.safetyRatingCount += m.safetyRatingCount;
  into.corrections += m.corrections;
  into.correctionTranslationSum += m.correctionTranslationSum;
  into.correctionRotationSum += m.correctionRotationSum;
  into.correctionGripperSum += m.correctionGripperSum;
  into.failures += m.failures;
  into.firstSeen = minDate(into.firstSeen, m.firstSeen);
  into.lastSeen = maxDate(into.lastSeen, m.lastSeen);
  return into;
}

/** A stored rollup row's measures (numbers may arrive as strings from the driver). */
export interface StoredMeasures {
  requests: number | string;
  errors: number | string;
  errorsByCode: Record<string, number>;
  safetyPass: number | string;
  safetyClamped: number | string;
  safetyRejected: number | string;
  safetyEmergencyStop: number | string;
  latencyTotal: Uint8Array | null;
  latencyModel: Uint8Array | null;
  latencyQueue: Uint8Array | null;
  feedbackCount: number | string;
  successRatingSum: number | string;
  successRatingCount: number | string;
  safetyRatingSum: number | string;
  safetyRatingCount: number | string;
  corrections: number | string;
  correctionTranslationSum: number | string;
  correctionRotationSum: number | string;
  correctionGripperSum: number | string;
  failures: number | string;
  firstSeen: Date | null;
  lastSeen: Date | null;
}

export function fromStored(s: StoredMeasures): Measures {
  const n = Number;
  return {
    requests: n(s.requests),
    errors: n(s.errors),
    errorsByCode: { ...s.errorsByCode },
    safetyPass: n(s.safetyPass),
    safetyClamped: n(s.safetyClamped),
    safetyRejected: n(s.safetyRejected),
    safetyEmergencyStop: n(s.safetyEmergencyStop),
    latencyTotal: decodeSketch(s.latencyTotal),
    latencyModel: decodeSketch(s.latencyModel),
    latencyQueue: decodeSketch(s.latencyQueue),
    feedbackCount: n(s.feedbackCount),
    successRatingSum: n(s.successRatingSum),
    successRatingCount: n(s.successRatingCount),
    safetyRatingSum: n(s.safetyRatingSum),
    safetyRatingCount: n(s.safetyRatingCount),
    corrections: n(s.corrections),
    correctionTranslationSum: n(s.correctionTranslationSum),
    correctionRotationSum: n(s.correctionRotationSum),
    correctionGripperSum: n(s.correctionGripperSum),
    failures: n(s.failures),
    firstSeen: s.firstSeen === null ? null : new Date(s.firstSeen),
    lastSeen: s.lastSeen === null ? null : new Date(s.lastSeen),
  };
}

export function toStored(m: Measures) {
  return {
    ...m,
    latencyTotal: encodeSketch(m.latencyTotal),
    latencyModel: encodeSketch(m.latencyModel),
    latencyQueue: encodeSketch(m.latencyQueue),
  };
}

/** UTC day (YYYY-MM-DD) and hour start of an instant in ms. */
export const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
export const hourOf = (ms: number) => new Date(Math.floor(ms / 3_600_000) * 3_600_000);
