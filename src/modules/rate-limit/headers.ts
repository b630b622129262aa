import { type Limits, limitOf, WINDOW_SECONDS, WINDOWS, type WindowName } from "./policy.ts";
import type { MeterResult } from "./rate-limit.service.ts";

/**
 * IETF draft-ietf-httpapi-ratelimit-headers-11 fields (RFC 9651 structured-field lists):
 *   RateLimit-Policy: "minute";q=10;w=60, "day";q=1000;w=86400, "month";q=10000;w=2592000
 *   RateLimit: "minute";r=3;t=41, "day";r=990;t=3600, "month";r=9990;t=400000
 * q = quota, w = window (s), r = remaining, t = seconds until the quota is fully available
 * again. Unlimited windows are left out of both fields.
 */
const policyCache = new WeakMap<Limits, string>();

export function policyHeader(limits: Limits): string {
  let v = policyCache.get(limits);
  if (v === undefined) {
    const items: string[] = [];
    for (const w of WINDOWS) {
      const q = limitOf(limits, w);
      if (q !== null) items.push(`"${w}";q=${q};w=${WINDOW_SECONDS[w]}`);
    }
    v = items.join(", ");
    policyCache.set(limits, v);
  }
  return v;
}

export function windowRemaining(r: MeterResult, w: WindowName): number | null {
  const q = limitOf(r.limits, w);
  if (q === null) return null;
  if (w === "minute") return Math.min(q, r.minuteRemaining);
  return Math.max(0, q - (w === "day" ? r.day : r.month));
}

export function windowResetSeconds(r: MeterResult, w: WindowName): number {
  if (w === "minute") return Math.max(0, Math.ceil(r.minuteResetMs / 1000));
  return Math.ceil(((w === "day" ? r.cal.nextDayAt : r.cal.nextMonthAt) - r.now) / 1000);
}

export function rateLimitHeader(r: MeterResult): string {
  // Built by concatenation (no array, no join): it runs on every metered request.
  let v = "";
  for (const w of WINDOWS) {
    const remaining = windowRemaining(r, w);
    if (remaining === null) continue;
    if (v !== "") v += ", ";
    v += `"${w}";r=${remaining};t=${windowResetSeconds(r, w)}`;
  }
  return v;
}

/**
 * `Billing-Overage: requests=<over>;cap=<cap>` (an RFC 9651 dictionary) once the month count is
 * past the included quota while metered overage is on: the requests beyond the quota so far this
 * month (billed) and the most allowed. The RateLimit-Policy month quota is the hard limit,
 * included + cap. Undefined when not in overage.
 */
export function overageHeader(r: MeterResult): string | undefined {
  const o = r.limits.overage;
  if (o === undefined || r.month <= o.included) return undefined;
  return `requests=${Math.min(r.month - o.included, o.cap)};cap=${o.cap}`;
}

export function rateLimitHeaders(r: MeterResult): Record<string, string> {
  const h: Record<string, string> = { "RateLimit-Policy": policyHeader(r.limits), RateLimit: rateLimitHeader(r) };
  const overage = overageHeader(r);
  if (overage !== undefined) h["Billing-Overage"] = overage;
  return h;
}
