import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";
import { repoRoot, run, tool } from "./tools.ts";

const promtool = tool("promtool", "prometheus");

const ALERTS = "deploy/prometheus/alerts.yml";
const DASHBOARD = "deploy/grafana/dashboards/vla-api.json";

/** Series Prometheus makes itself rather than scraping them. */
const PROMETHEUS_SERIES = new Set(["up"]);

/** The `expr:` of every rule (one line, or a `|` block), without a YAML parser. */
function ruleExpressions(text: string): string[] {
  const lines = text.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(?:- )?expr:\s*(.*)$/.exec(lines[i] as string);
    if (m === null) continue;
    const indent = (m[1] as string).length;
    const rest = (m[2] as string).trim();
    if (rest !== "|" && rest !== ">" && rest !== "|-" && rest !== ">-") {
      out.push(rest);
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length) {
      const next = lines[i + 1] as string;
      if (next.trim() !== "" && next.length - next.trimStart().length <= indent) break;
      block.push(next.trim());
      i++;
    }
    out.push(block.join(" ").trim());
  }
  return out;
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "inf",
  "nan",
]);

/** Metric names a PromQL expression selects (functions, labels, keywords, durations left out). */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, " ") // label values, strings
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges, $__rate_interval
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // grouping labels
    .replace(/(?<![A-Za-z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, " "); // numbers
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    const name = m[1] as string;
    if (m[2] !== undefined || KEYWORDS.has(name.toLowerCase())) continue; // a function call or keyword
    names.add(name);
  }
  return [...names];
}

/** Every series name /metrics can produce: each `# TYPE` plus the suffixes of its type, and every sample line. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type !== null) {
      const [, name, kind] = type as unknown as [string, string, string];
      names.add(name);
      if (kind === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
      if (kind === "summary") for (const s of ["_sum", "_count"]) names.add(name + s);
      continue;
    }
    const sample = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (sample !== null) names.add(sample[1] as string);
  }
  return names;
}

function dashboardExpressions(): string[] {
  const dashboard = JSON.parse(readFileSync(path.join(repoRoot, DASHBOARD), "utf8")) as {
    panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
  };
  return dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

describe.skipIf(promtool.skip)("Prometheus rules and config (promtool)", () => {
  it(`promtool check rules ${ALERTS}`, () => {
    const r = run(promtool.require(), ["check", "rules", ALERTS]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("promtool check config deploy/prometheus/prometheus.yml (with its rule file)", () => {
    const r = run(promtool.require(), ["check", "config", "deploy/prometheus/prometheus.yml"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe("every metric the alerts and the dashboard query exists in /metrics", () => {
  let t: TestContext;
  let exposed: Set<string>;

  beforeAll(async () => {
    t = await buildTestApp();
    // A few requests so the HTTP counters and histograms have samples.
    await t.app.inject({ method: "GET", url: "/health/live" });
    await t.app.inject({ method: "GET", url: "/health" });
    await t.app.inject({ method: "GET", url: "/no-such-route-for-metrics" });
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    exposed = exposedNames(res.body);
  });

  afterAll(async () => {
    await t?.close();
  });

  it("the PromQL name extraction works", () => {
    expect(
      metricNames(
        'sum by (le, model) (rate(vla_x_bucket{route=~"/a|/b"}[$__rate_interval])) / clamp_min(sum(rate(up[5m])), 1e-9) > 0.5 and on(instance) vla_y == 1 or nodejs_lag_p99_seconds',
      ).sort(),
    ).toEqual(["nodejs_lag_p99_seconds", "up", "vla_x_bucket", "vla_y"]);
    expect(
      ruleExpressions("  - alert: A\n    expr: |\n      sum(a)\n        / b\n    for: 1m\n  - expr: c > 1\n"),
    ).toEqual(["sum(a) / b", "c > 1"]);
  });

  it("alert rules", () => {
    const exprs = ruleExpressions(readFileSync(path.join(repoRoot, ALERTS), "utf8"));
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    const used = new Set(exprs.flatMap(metricNames));
    expect(used).toContain("vla_rate_limit_fallback_active");
    const missing = [...used].filter((n) => !exposed.has(n) && !PROMETHEUS_SERIES.has(n));
    expect(missing, "alert rules query metrics the app does not expose").toEqual([]);
  });

  it("Grafana dashboard", () => {
    const exprs = dashboardExpressions();
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    const used = new Set(exprs.flatMap(metricNames));
    for (const n of [
      "vla_http_requests_total",
      "vla_http_request_duration_seconds_bucket",
      "vla_model_queue_depth",
      "vla_batch_rows_buffered",
      "vla_rate_limit_fallback_active",
      "vla_safety_violations_total",
    ]) {
      expect(used, n).toContain(n);
    }
    const missing = [...used].filter((n) => !exposed.has(n) && !PROMETHEUS_SERIES.has(n));
    expect(missing, "dashboard panels query metrics the app does not expose").toEqual([]);
  });

  it("the dashboard uses the provisioned datasource", () => {
    const dashboard = JSON.parse(readFileSync(path.join(repoRoot, DASHBOARD), "utf8"));
    const provisioned = readFileSync(
      path.join(repoRoot, "deploy/grafana/provisioning/datasources/prometheus.yml"),
      "utf8",
    );
    const uid = /^\s+uid:\s*(\S+)/m.exec(provisioned)?.[1];
    expect(uid).toBeDefined();
    for (const p of dashboard.panels as { type: string; datasource?: { uid: string } }[]) {
      if (p.type !== "row") expect(p.datasource?.uid).toBe(uid);
    }
  });
});
