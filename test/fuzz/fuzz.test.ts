import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { distinctFailures, type FuzzTarget, formatReport, runFuzz, startFuzzTarget, totals } from "./fuzz-lib.ts";

/**
 * The short fuzz run of `npm test`: every route and both WebSocket endpoints with generated
 * malformed input (bench/fuzz.ts runs the same driver for >= 10,000 cases with a fresh seed each
 * run, to explore). Here the seed is fixed so CI is reproducible; FUZZ_SEED=<n> runs another one,
 * FUZZ_CASES=<n> changes the count.
 */
const seed = process.env.FUZZ_SEED === undefined ? 20261205 : Number(process.env.FUZZ_SEED);
const cases = Number(process.env.FUZZ_CASES ?? 3000);

let target: FuzzTarget;
beforeAll(async () => {
  target = await startFuzzTarget();
});
afterAll(async () => {
  await target?.close();
});

describe("fuzz", () => {
  it("finds every route of the app, hidden ones and both WebSocket endpoints included", () => {
    const names = new Set(target.routes.map((r) => `${r.method} ${r.path}`));
    for (const r of [
      "POST /v1/inference",
      "POST /act",
      "GET /v1/stream",
      "GET /v1/openpi",
      "POST /auth/token",
      "GET /docs/*",
    ]) {
      expect(names.has(r), r).toBe(true);
    }
    expect(target.routes.filter((r) => r.op !== undefined).length).toBeGreaterThan(30);
  });

  it(`no 5xx, crash, unanswered or unclosed socket over ${cases} generated cases (seed ${seed})`, async () => {
    const report = await runFuzz(target, { cases, seed });
    const t = totals(report);
    const text = formatReport(report);
    const summary = { ...t, distinct: distinctFailures(report).length, seed };
    expect(summary, `replay with FUZZ_SEED=${seed} FUZZ_CASES=${cases}\n${text}`).toEqual({
      fiveXx: 0,
      crashes: 0,
      unclosed: 0,
      unanswered: 0,
      distinct: 0,
      seed,
    });
  }, 600_000);
});
