/** 0001-01-01T00:00:00Z, the first instant of `isStorableInstant`. */
export const FIRST_INSTANT = Date.parse("0001-01-01T00:00:00.000Z");
const LAST_INSTANT = Date.parse("9999-12-31T23:59:59.999Z");

/**
 * An instant (ms since the epoch) that a PostgreSQL timestamp stores and a JS Date prints as
 * RFC 3339: years 1..9999 UTC. Year 0 is a valid RFC 3339 year and a valid JS Date, but no
 * PostgreSQL timestamp (which counts 1 BC, not year 0), so it failed as a 500 in the query.
 */
export function isStorableInstant(ms: number): boolean {
  return Number.isFinite(ms) && ms >= FIRST_INSTANT && ms <= LAST_INSTANT;
}
