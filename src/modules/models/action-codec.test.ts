import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import {
  BIN_CENTERS,
  BIN_EDGES,
  decodeAction,
  decodeToken,
  encodeValue,
  normalize,
  unnormalize,
} from "./action-codec.ts";
import { loadDatasetStatistics, selectUnnormKey } from "./dataset-statistics.ts";

const stats = loadDatasetStatistics(
  new URL("../../../models/mock-openvla-7b/dataset_statistics.json", import.meta.url).pathname,
);
const bridge = stats.entries.get("bridge_orig")?.action;
if (bridge === undefined) throw new Error("bridge_orig missing");

function close(actual: readonly number[], expected: readonly number[], tol: number) {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((a, i) => {
    expect(Math.abs(a - (expected[i] as number))).toBeLessThanOrEqual(tol);
  });
}

describe("action codec: bins", () => {
  it("has 256 edges on [-1, 1] and 255 centres", () => {
    expect(BIN_EDGES).toHaveLength(256);
    expect(BIN_EDGES[0]).toBe(-1);
    expect(BIN_EDGES[255]).toBe(1);
    expect(BIN_CENTERS).toHaveLength(255);
    expect(Math.abs((BIN_EDGES[1] as number) - (BIN_EDGES[0] as number) - 2 / 255)).toBeLessThan(1e-15);
  });

  it.each([
    [31999, -0.996078431372549],
    [31998, -0.9882352941176471],
    [31872, 0.0],
    [31871, 0.007843137254901933],
    [31745, 0.996078431372549],
    [31744, 0.996078431372549],
  ])("decodes token %i to %f (reference table)", (token, value) => {
    expect(Math.abs(decodeToken(token) - value)).toBeLessThanOrEqual(1e-12);
  });

  it("rejects ids outside 31744..31999 instead of clipping", () => {
    for (const t of [0, 31743, 32000, 31872.5, Number.NaN, -1]) {
      expect(() => decodeToken(t)).toThrow(AppError);
      try {
        decodeToken(t);
      } catch (e) {
        expect((e as AppError).code).toBe("invalid_model_output");
        expect((e as AppError).status).toBe(502);
      }
    }
  });

  it("encodes +1, 0, -1 as in the reference", () => {
    expect(encodeValue(1)).toBe(31744);
    expect(encodeValue(0)).toBe(31872);
    expect(encodeValue(-1)).toBe(31999);
    expect(encodeValue(5)).toBe(31744);
    expect(encodeValue(-5)).toBe(31999);
    expect(() => encodeValue(Number.NaN)).toThrow();
  });

  it("decode(encode(x)) is within one bin of x for every x in [-1, 1]", () => {
    fc.assert(
      fc.property(fc.double({ min: -1, max: 1, noNaN: true }), (x) => {
        const t = encodeValue(x);
        expect(t).toBeGreaterThanOrEqual(31744);
        expect(t).toBeLessThanOrEqual(31999);
        expect(Math.abs(decodeToken(t) - x)).toBeLessThanOrEqual(2 / 255 + 1e-12);
      }),
    );
  });
});

describe("action codec: un-normalization", () => {
  it("decodes [31872 x6, 31744] with bridge_orig to the reference vector", () => {
    const action = decodeAction([31872, 31872, 31872, 31872, 31872, 31872, 31744], bridge);
    // The reference prints 9 significant digits, so agreement with the printed vector can only
    // be checked to that precision (relative 1e-8; absolute error up to 4.4e-12 on dims 2, 4, 5).
    const printed = [
      -2.08787322e-4, -4.24122512e-4, 7.03386392e-3, 4.99713421e-4, -7.47924492e-3, -1.67850941e-3, 0.996078431372549,
    ];
    action.forEach((a, i) => {
      const p = printed[i] as number;
      expect(Math.abs(a - p)).toBeLessThanOrEqual(1e-8 * Math.abs(p));
    });
    // Full float64 values of the same formula (computed independently with Python floats): 1e-12.
    close(
      action,
      [
        -0.00020878732204438963, -0.00042412251234059256, 0.007033863924443714, 0.0004997134208677839,
        -0.007479244917631175, -0.0016785094141960888, 0.996078431372549,
      ],
      1e-12,
    );
    expect(action[6]).toBe(0.996078431372549);
  });

  it("un-normalizes every dimension when there is no mask", () => {
    const s = { q01: [0, -2], q99: [10, 2] };
    expect(unnormalize([1, -1], s)).toEqual([10, -2]);
    expect(unnormalize([0, 0], s)).toEqual([5, 0]);
  });

  it("supports BOUNDS (min/max) and the OFT epsilon", () => {
    const s = { q01: [0], q99: [1], min: [-4], max: [4] };
    expect(unnormalize([0.5], s, { mode: "bounds" })).toEqual([2]);
    expect(unnormalize([1], s, { epsilon: 1e-8 })[0]).toBe(1 + 1e-8);
    expect(() => unnormalize([0], { q01: [0], q99: [1] }, { mode: "bounds" })).toThrow(AppError);
  });

  it("rejects non-finite values and dimension mismatches", () => {
    expect(() => unnormalize([Number.NaN, 0, 0, 0, 0, 0, 0], bridge)).toThrow(/non-finite/);
    expect(() => unnormalize([0, 0, 0, 0, 0, 0, Number.POSITIVE_INFINITY], bridge)).toThrow(/non-finite/);
    expect(() => unnormalize([0, 0], bridge)).toThrow(/dimensions/);
  });

  it("normalize inverts unnormalize", () => {
    const a = unnormalize([0.3, -0.2, 0.1, 0, 0.9, -0.9, 1], bridge);
    close(normalize(a, bridge), [0.3, -0.2, 0.1, 0, 0.9, -0.9, 1], 1e-12);
  });
});

describe("unnorm_key selection", () => {
  it("requires a key on a multi-key model without default, listing the valid keys", () => {
    try {
      selectUnnormKey(stats, undefined, undefined);
      expect.unreachable();
    } catch (e) {
      expect((e as AppError).code).toBe("invalid_unnorm_key");
      expect((e as AppError).status).toBe(400);
      expect((e as AppError).message).toContain("bridge_orig");
      expect((e as AppError).message).toContain("fractal20220817_data");
      expect((e as AppError).extensions.valid_unnorm_keys).toEqual(["bridge_orig", "fractal20220817_data"]);
    }
  });

  it("uses the default key, accepts a valid key, rejects an unknown key", () => {
    expect(selectUnnormKey(stats, undefined, "bridge_orig").key).toBe("bridge_orig");
    expect(selectUnnormKey(stats, "fractal20220817_data", "bridge_orig").key).toBe("fractal20220817_data");
    expect(() => selectUnnormKey(stats, "kuka", "bridge_orig")).toThrow(/Unknown unnorm_key "kuka"/);
  });
});
