import { describe, expect, it } from "vitest";
import { BLOCK, tarHeader, tarPadding } from "./tar.ts";

describe("tar writer", () => {
  it("writes a ustar header with octal fields and a valid checksum", () => {
    const h = tarHeader({ name: "inference_logs.ndjson", size: 1234, mtime: 1_700_000_000 });
    expect(h.length).toBe(BLOCK);
    expect(h.subarray(0, 21).toString()).toBe("inference_logs.ndjson");
    expect(h.subarray(124, 136).toString()).toBe(`${(1234).toString(8).padStart(11, "0")}\0`);
    expect(h.subarray(257, 263).toString()).toBe("ustar\0");
    expect(String.fromCharCode(h[156] as number)).toBe("0");
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    expect(Number.parseInt(h.subarray(148, 154).toString(), 8)).toBe(sum);
  });

  it("uses the base-256 size field from 8 GiB on", () => {
    const size = 8 ** 11 + 5;
    const h = tarHeader({ name: "big.ndjson", size, mtime: 0 });
    expect(h[124]).toBe(0x80);
    expect(h.readBigUInt64BE(128)).toBe(BigInt(size));
  });

  it("pads content to the block size and refuses names over 100 bytes", () => {
    expect(tarPadding(0).length).toBe(0);
    expect(tarPadding(1).length).toBe(511);
    expect(tarPadding(512).length).toBe(0);
    expect(() => tarHeader({ name: "x".repeat(101), size: 0, mtime: 0 })).toThrow();
  });
});
