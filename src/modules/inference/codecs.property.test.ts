import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { decodeJsonNumpy, encodeJsonNumpy } from "./json-numpy.ts";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "./msgpack-numpy.ts";
import type { NdArray } from "./ndarray.ts";

describe("codec properties", () => {
  it("json_numpy round-trips any float64 array", () => {
    fc.assert(
      fc.property(fc.array(fc.double(), { maxLength: 64 }), (values) => {
        const d = encodeJsonNumpy(new Float64Array(values), [values.length]);
        const back = decodeJsonNumpy(JSON.parse(JSON.stringify(d)));
        expect([...back.data]).toEqual([...new Float64Array(values)]);
      }),
    );
  });

  it("msgpack-numpy round-trips uint8 images of any shape", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 }), (h, w) => {
        const data = Uint8Array.from({ length: h * w * 3 }, (_, i) => (i * 13) & 255);
        const v = unpackMsgpackNumpy(packMsgpackNumpy({ img: { data, shape: [h, w, 3] } })) as { img: NdArray };
        expect(v.img.shape).toEqual([h, w, 3]);
        expect([...v.img.data]).toEqual([...data]);
      }),
    );
  });

  it("arbitrary bytes never crash the msgpack decoder with anything but invalid_array", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          unpackMsgpackNumpy(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(AppError);
          expect((e as AppError).code).toBe("invalid_array");
        }
      }),
      { numRuns: 500 },
    );
  });
});
