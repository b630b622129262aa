import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CATALOGUE } from "../../src/platform/errors.ts";

describe("docs/errors.md", () => {
  it("has a `## code` heading for every catalogue code and no others", () => {
    const md = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
    const headings = [...md.matchAll(/^## (\S+)$/gm)].map((m) => m[1]);
    expect(new Set(headings)).toEqual(new Set(Object.keys(ERROR_CATALOGUE)));
  });
});
