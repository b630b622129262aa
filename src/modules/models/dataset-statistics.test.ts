import { describe, expect, it } from "vitest";
import { actionDim, parseDatasetStatistics, StatisticsError, selectUnnormKey } from "./dataset-statistics.ts";

const entry = (q01: unknown[], q99: unknown[], extra: Record<string, unknown> = {}) => ({
  action: { q01, q99, ...extra },
});

describe("dataset statistics", () => {
  it("parses several keys; the action dimension is len(q01); mask optional", () => {
    const s = parseDatasetStatistics({
      a: entry([0, 0, 0], [1, 1, 1], { mask: [true, true, false] }),
      b: { ...entry([0], [1]), num_transitions: 5, num_trajectories: 1 },
    });
    expect(s.keys).toEqual(["a", "b"]);
    expect(actionDim(s, "a")).toBe(3);
    expect(actionDim(s, "b")).toBe(1);
    expect(s.entries.get("b")?.action.mask).toBeUndefined();
    expect(s.entries.get("b")?.numTransitions).toBe(5);
  });

  it("a single-key model needs no unnorm_key", () => {
    const s = parseDatasetStatistics({ only: entry([0], [1]) });
    expect(selectUnnormKey(s, undefined, undefined).key).toBe("only");
  });

  it.each([
    [null, /expected an object/],
    [{}, /no unnorm_key/],
    [{ k: {} }, /k\.action: expected an object/],
    [{ k: entry([0, 0], [1]) }, /q99: length 1 differs/],
    [{ k: entry([0], [1], { mask: [true, false] }) }, /mask: length 2/],
    [{ k: entry([0], [1], { mask: ["yes"] }) }, /mask: expected an array of booleans/],
    [{ k: entry([1], [0]) }, /q99\[0\] < q01\[0\]/],
    [{ k: entry([0, "x"], [1, 1]) }, /q01\[1\]: not a finite number/],
    [{ k: { ...entry([0], [1]), num_transitions: -1 } }, /num_transitions/],
    [{ "bad key!": entry([0], [1]) }, /invalid unnorm_key/],
  ])("rejects %j", (doc, message) => {
    expect(() => parseDatasetStatistics(doc, "stats")).toThrow(StatisticsError);
    expect(() => parseDatasetStatistics(doc, "stats")).toThrow(message);
  });
});
