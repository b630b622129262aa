import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CATALOGUE } from "../src/platform/errors.ts";

const root = path.resolve(import.meta.dirname, "..");

describe("docs/errors.md", () => {
  it("documents exactly the codes of the catalogue, with their statuses", () => {
    const text = readFileSync(path.join(root, "docs/errors.md"), "utf8");
    const documented = [...text.matchAll(/^## ([a-z_]+)\s*\n+Status (\d{3})\./gm)].map(
      (m) => [m[1], Number(m[2])] as const,
    );
    const catalogue = Object.entries(ERROR_CATALOGUE).map(([code, e]) => [code, e.status] as const);
    expect(new Map(documented)).toEqual(new Map(catalogue));
  });
});

describe("README configuration table", () => {
  it("lists every environment variable that config.ts reads", () => {
    const source = readFileSync(path.join(root, "src/config.ts"), "utf8");
    const readme = readFileSync(path.join(root, "README.md"), "utf8");
    const vars = new Set([...source.matchAll(/r\.\w+\("([A-Z0-9_]+)"/g)].map((m) => m[1] as string));
    expect(vars.size).toBeGreaterThan(10);
    const rows = new Set([...readme.matchAll(/^\|\s*`([A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1]));
    const missing = [...vars].filter((v) => !rows.has(v));
    expect(missing).toEqual([]);
  });
});

describe("docs/operations.md metrics table", () => {
  it("documents every metric the app registers", async () => {
    const { buildTestApp } = await import("./helpers/app.ts");
    const ctx = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
    try {
      const names = (await ctx.app.platform.metrics.registry.getMetricsAsJSON())
        .map((m) => m.name)
        .filter((n) => n.startsWith("vla_"));
      expect(names.length).toBeGreaterThan(20);
      const doc = readFileSync(path.join(root, "docs/operations.md"), "utf8");
      const rows = new Set([...doc.matchAll(/^\|\s*`(vla_[a-z_]+)`\s*\|/gm)].map((m) => m[1]));
      expect(names.filter((n) => !rows.has(n))).toEqual([]);
    } finally {
      await ctx.close();
    }
  });
});
