import { describe, expect, it } from "vitest";
import { parsePromText } from "./prom-text.ts";

describe("parsePromText", () => {
  it("skips HELP/TYPE and other comments and blank lines", () => {
    const text = "# HELP x Some help\n# TYPE x gauge\n\n# just a comment\nx 1\n";
    expect(parsePromText(text)).toEqual([{ name: "x", labels: {}, value: 1 }]);
  });

  it("reads labels with escaped quotes, backslashes and newlines, commas and spaces inside values", () => {
    const [s] = parsePromText('m{a="x\\"y",b="c:\\\\d",c="line1\\nline2",d="p, q} r",} 2\n');
    expect(s?.labels).toEqual({ a: 'x"y', b: "c:\\d", c: "line1\nline2", d: "p, q} r" });
    expect(s?.value).toBe(2);
  });

  it("reads NaN, +Inf, -Inf, exponents and an optional timestamp", () => {
    const values = parsePromText(
      "a NaN\nb +Inf\nc -Inf\nd 8.589934592e+10\ne 1E-3\nf -2.5 1700000000000\ng{} 7\r\n",
    ).map((s) => s.value);
    expect(values[0]).toBeNaN();
    expect(values.slice(1)).toEqual([
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      85_899_345_920,
      0.001,
      -2.5,
      7,
    ]);
  });

  it("rejects garbage instead of reading half of it", () => {
    expect(() => parsePromText("<html><body>oops</body></html>")).toThrow(/line 1/);
    expect(() => parsePromText('x 1\ny{a="unterminated} 2\n')).toThrow(/line 2/);
    expect(() => parsePromText("x one\n")).toThrow(/invalid value/);
    expect(() => parsePromText('x{a="\\q"} 1\n')).toThrow(/escape/);
    expect(() => parsePromText("x 1 2 3\n")).toThrow(/expected a value/);
  });
});
