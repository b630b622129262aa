import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CATALOGUE } from "../src/platform/errors.ts";

describe("docs/errors.md", () => {
  it("documents exactly the codes of the catalogue, each under its own heading with its status", () => {
    const doc = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");
    const headings = [...doc.matchAll(/^## ([a-z_]+)\s*$/gm)].map((m) => m[1]);
    expect([...headings].sort()).toEqual(Object.keys(ERROR_CATALOGUE).sort());
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      const section = doc.split(`## ${code}\n`)[1]?.split("\n## ")[0] ?? "";
      expect(section.trim().startsWith(`${entry.status}.`), code).toBe(true);
    }
  });
});
