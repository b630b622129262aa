import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeReason } from "../../src/modules/streaming/protocol.ts";
import { buildStreamApp, connect, type StreamTestContext } from "./helpers.ts";

/** Malformed and hostile input on WS /v1/stream and WS /v1/openpi (docs/streaming.md). */

let t: StreamTestContext;
beforeAll(async () => {
  t = await buildStreamApp();
});
afterAll(async () => {
  await t?.close();
});

describe("WS /v1/stream: other malformed input", () => {
  it("a message quoting megabytes of input in its close reason is closed at once (1003, reason <= 123 bytes)", async () => {
    // The reason used to be trimmed one character at a time, each time re-measuring the whole
    // string: quadratic, about half a second for 60 KB and minutes for this one.
    const c = await connect(t, t.key);
    c.json({ type: "é".repeat(1_500_000) });
    const closed = await c.closed;
    expect(closed.code).toBe(1003);
    expect(Buffer.byteLength(closed.reason)).toBeLessThanOrEqual(123);
    expect(closed.reason).toMatch(/^unknown message type "é+$/);
  });

  it("close reasons are cut to 123 bytes without splitting a surrogate pair", () => {
    expect(closeReason(`${"x".repeat(120)}\u{1F600}`)).toBe("x".repeat(120));
    expect(closeReason("é".repeat(100))).toBe("é".repeat(61));
    expect(closeReason("short")).toBe("short");
  });
});
