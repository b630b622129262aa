import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CATALOGUE } from "../../src/platform/errors.ts";

describe("docs/errors.md", () => {
  it("has one `## code` section per catalogue entry, and no others", () => {
    const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
    const headings = [...doc.matchAll(/^## ([a-z_]+)\s*$/gm)].map((m) => m[1]);
    expect(headings.sort()).toEqual(Object.keys(ERROR_CATALOGUE).sort());
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      const section = doc.split(`## ${code}\n`)[1] ?? "";
      expect(section.trimStart().startsWith(`${status}.`), `${code} starts with its status`).toBe(true);
    }
  });
});
