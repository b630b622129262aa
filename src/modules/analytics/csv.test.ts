import { describe, expect, it } from "vitest";
import { toCsv, wantsCsv } from "./csv.ts";

describe("csv", () => {
  it("quotes, escapes and defuses formulas", () => {
    expect(
      toCsv(
        ["a", "b"],
        [
          ["x,y", 'say "hi"'],
          ["=SUM(A1)", 1.5],
          [null, -2],
        ],
      ),
    ).toBe('a,b\r\n"x,y","say ""hi"""\r\n\'=SUM(A1),1.5\r\n,-2\r\n');
  });

  it("negotiates text/csv against application/json", () => {
    expect(wantsCsv(undefined)).toBe(false);
    expect(wantsCsv("text/csv")).toBe(true);
    expect(wantsCsv("application/json")).toBe(false);
    expect(wantsCsv("*/*")).toBe(false);
    expect(wantsCsv("text/csv, application/json")).toBe(true);
    expect(wantsCsv("application/json, text/csv")).toBe(false);
    expect(wantsCsv("application/json;q=0.5, text/csv")).toBe(true);
    expect(wantsCsv("text/csv;q=0")).toBe(false);
  });
});
