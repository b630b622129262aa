import { describe, expect, it } from "vitest";
import { passwordProblem } from "./password-policy.ts";

describe("passwordProblem", () => {
  it("accepts 8 to 128 characters that are not common", () => {
    expect(passwordProblem("correct horse")).toBeUndefined();
    expect(passwordProblem("x".repeat(128))).toBeUndefined();
  });

  it("names the problem", () => {
    expect(passwordProblem("short")).toMatch(/at least 8/);
    expect(passwordProblem("x".repeat(129))).toMatch(/at most 128/);
    expect(passwordProblem("Password123")).toMatch(/common/);
  });

  it("counts characters, not UTF-16 units", () => {
    expect(passwordProblem("🔒".repeat(8))).toBeUndefined();
    expect(passwordProblem("🔒".repeat(7))).toMatch(/at least 8/);
  });
});
