import { Packr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { AppError } from "../../platform/errors.ts";
import { packMsgpackNumpy, unpackMsgpackNumpy } from "./msgpack-numpy.ts";
import type { NdArray } from "./ndarray.ts";

// The byte dump of {"actions": float32 array [1.0]} from the reference (section 6), verbatim.
const REFERENCE_DUMP = [
  "81",
  "a7 616374696f6e73",
  "84",
  "c4 0b 5f5f6e6461727261795f5f c3",
  "c4 04 64617461  c4 04 0000803f",
  "c4 05 6474797065  a3 3c6634",
  "c4 05 7368617065  91 01",
]
  .join("")
  .replace(/\s+/g, "");

const b = (s: string) => Buffer.from(s);
const raw = new Packr({ useRecords: false, variableMapSize: true });

describe("msgpack-numpy", () => {
  it("encodes {actions: float32 [1.0]} exactly as the reference byte dump", () => {
    const bytes = packMsgpackNumpy({ actions: { data: new Float32Array([1]), shape: [1] } });
    expect(Buffer.from(bytes).toString("hex")).toBe(REFERENCE_DUMP);
  });

  it("decodes the reference dump back", () => {
    const v = unpackMsgpackNumpy(Buffer.from(REFERENCE_DUMP, "hex")) as { actions: NdArray };
    expect(v.actions.dtype).toBe("<f4");
    expect(v.actions.shape).toEqual([1]);
    expect([...v.actions.data]).toEqual([1]);
  });

  it("decodes observations with bin- or str-keyed markers, npgeneric scalars and bytes prompts", () => {
    const img = new Map<unknown, unknown>([
      ["__ndarray__", true],
      ["data", Buffer.from([1, 2, 3, 4, 5, 6])],
      ["dtype", "|u1"],
      ["shape", [1, 2, 3]],
    ]);
    const scalar = new Map<unknown, unknown>([
      [b("__npgeneric__"), true],
      [b("data"), 0.5],
      [b("dtype"), "<f8"],
    ]);
    const obs = new Map<unknown, unknown>([
      ["observation/image", img],
      ["observation/gripper", scalar],
      ["prompt", Buffer.from("pick up the cup")],
    ]);
    const v = unpackMsgpackNumpy(raw.pack(obs)) as Record<string, unknown>;
    expect((v["observation/image"] as NdArray).shape).toEqual([1, 2, 3]);
    expect(v["observation/gripper"]).toBe(0.5);
    expect(Buffer.from(v.prompt as Uint8Array).toString()).toBe("pick up the cup");
  });

  it("round-trips a (H, D) action chunk", () => {
    const data = new Float32Array([0.25, -1, 3, 4, 5, 6]);
    const v = unpackMsgpackNumpy(packMsgpackNumpy({ actions: { data, shape: [2, 3] }, t: { infer_ms: 1.5 } })) as {
      actions: NdArray;
      t: { infer_ms: number };
    };
    expect(v.actions.shape).toEqual([2, 3]);
    expect([...v.actions.data]).toEqual([...data]);
    expect(v.t.infer_ms).toBe(1.5);
  });

  it.each(["|V8", "|O", "<c8"])("refuses kind %s", (dtype) => {
    const m = new Map<unknown, unknown>([
      [b("__ndarray__"), true],
      [b("data"), Buffer.alloc(8)],
      [b("dtype"), dtype],
      [b("shape"), [1]],
    ]);
    expect(() => unpackMsgpackNumpy(raw.pack(m))).toThrow(AppError);
  });

  it("reads array data in place from the received message (no copy), and copies what is misaligned", () => {
    const image = new Uint8Array(224 * 224 * 3).fill(5);
    const msg = packMsgpackNumpy({
      "observation/image": { data: image, shape: [224, 224, 3] },
      state: { data: Float64Array.of(1.5, -2), shape: [2] },
    });
    const obs = unpackMsgpackNumpy(msg) as Record<string, NdArray>;
    const img = obs["observation/image"] as NdArray;
    expect(img.data.buffer === msg.buffer).toBe(true);
    expect(img.data.byteOffset).toBeGreaterThanOrEqual(msg.byteOffset);
    expect(img.data.byteOffset + img.data.byteLength).toBeLessThanOrEqual(msg.byteOffset + msg.byteLength);
    expect(img.data.every((v) => v === 5)).toBe(true);
    // float64 data lands at whatever offset the encoding gives it: it is copied when misaligned.
    const state = obs.state as NdArray;
    expect(Array.from(state.data as Float64Array)).toEqual([1.5, -2]);
    expect(state.data.byteOffset % 8).toBe(0);
  });

  it("refuses garbage, length mismatches and oversize arrays", () => {
    expect(() => unpackMsgpackNumpy(Buffer.from([0xc1]))).toThrow(AppError);
    const bad = new Map<unknown, unknown>([
      [b("__ndarray__"), true],
      [b("data"), Buffer.alloc(3)],
      [b("dtype"), "<f4"],
      [b("shape"), [1]],
    ]);
    expect(() => unpackMsgpackNumpy(raw.pack(bad))).toThrow(/needs 4/);
    const big = packMsgpackNumpy({ a: { data: new Uint8Array(100), shape: [100] } });
    expect(() => unpackMsgpackNumpy(big, { limits: { maxBytes: 50, maxDims: 4 } })).toThrow(/exceeds/);
  });
});
