import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { distinctFailures, formatReport, runFuzz, startFuzzTarget, totals } from "../test/fuzz/fuzz-lib.ts";

/**
 * Fuzz bench: `npx node bench/fuzz.ts [--cases N] [--seed S] [--out FILE] [--only REGEX]`. Drives every route of
 * the app (found from its own route tree) and both WebSocket endpoints with >= 10,000 generated
 * malformed cases (default), then prints per target the cases, statuses seen, 5xx, crashes and
 * unclosed sockets, plus RSS before/after. Exits 1 on any failure. The same driver, shorter, runs
 * in `npm test` (test/fuzz/fuzz.test.ts).
 */
const { values } = parseArgs({
  options: {
    cases: { type: "string", default: "10000" },
    seed: { type: "string" },
    out: { type: "string" },
    only: { type: "string" },
  },
});
const cases = Number(values.cases);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed)) {
  console.error("usage: npx node bench/fuzz.ts [--cases N] [--seed S] [--out FILE] [--only REGEX]");
  process.exit(2);
}

const target = await startFuzzTarget();
console.log(`fuzz: ${target.routes.length} routes + WS /v1/stream + WS /v1/openpi; ${cases} cases, seed ${seed}`);
const report = await runFuzz(target, {
  cases,
  seed,
  ...(values.only === undefined ? {} : { only: new RegExp(values.only) }),
  onProgress: (n) => process.stderr.write(`  ${n} cases\n`),
});
await target.close();
const text = formatReport(report);
console.log(text);
if (values.out !== undefined) writeFileSync(values.out, `${text}\n`);
const t = totals(report);
const failed = t.fiveXx + t.crashes + t.unclosed + t.unanswered > 0 || distinctFailures(report).length > 0;
process.exit(failed ? 1 : 0);
