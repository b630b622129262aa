import { describe, expect, it } from "vitest";
import { invalidCharacter, nulProblems } from "./text-guard.ts";

describe("nulProblems", () => {
  it("points at values and at objects whose member names hold U+0000, escaping ~ and /", () => {
    const doc = { a: "ok", "b/c~d": ["x", "y\u0000"], e: { "f\u0000": "ignored\u0000" }, g: 1, h: null };
    expect(nulProblems(doc)).toEqual([
      { path: "/b~1c~0d/1", message: "contains U+0000 (NUL)" },
      { path: "/e", message: "has a member name containing U+0000 (NUL)" },
    ]);
    expect(nulProblems("\u0000", "/prompt")).toEqual([{ path: "/prompt", message: "contains U+0000 (NUL)" }]);
    expect(nulProblems({ a: "clean", b: [1, true, { c: "d" }] })).toEqual([]);
  });

  it("skips binary values, stops after 10 problems and survives any depth", () => {
    expect(nulProblems({ image: new Uint8Array([0, 0, 0]), data: new Float32Array(2) })).toEqual([]);
    expect(nulProblems(Array.from({ length: 1000 }, () => "\u0000"))).toHaveLength(10);
    let deep: unknown = "\u0000";
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(nulProblems(deep)[0]?.path).toHaveLength(200 + 3);
  });

  it("invalidCharacter is a 400 naming every place", () => {
    const e = invalidCharacter(
      [
        { path: "", message: "m" },
        { path: "/x", message: "n" },
      ],
      "The start message",
    );
    expect(e).toMatchObject({ code: "invalid_character", status: 400 });
    expect(e.detail).toBe(
      "The start message contains U+0000 (NUL) at the top level, /x; text must not contain NUL characters.",
    );
    expect(e.errors).toEqual([
      { in: "body", path: "", message: "m" },
      { in: "body", path: "/x", message: "n" },
    ]);
  });
});
