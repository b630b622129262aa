import { createHmac, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { KEY_PSEUDONYM, Pseudonymizer, ROBOT_PSEUDONYM } from "./pseudonym.ts";

const SECRET = "a".repeat(48);

describe("Pseudonymizer", () => {
  const p = new Pseudonymizer(SECRET);
  const c1 = randomUUID();
  const c2 = randomUUID();

  it("gives stable, prefixed robot pseudonyms, distinct per customer and per key", () => {
    const a = p.robot(c1, "arm-1");
    expect(a).toMatch(ROBOT_PSEUDONYM);
    expect(p.robot(c1, "arm-1")).toBe(a);
    expect(new Pseudonymizer(SECRET).robot(c1, "arm-1")).toBe(a);
    expect(p.robot(c2, "arm-1")).not.toBe(a);
    expect(p.robot(c1, "arm-2")).not.toBe(a);
    expect(new Pseudonymizer("b".repeat(48)).robot(c1, "arm-1")).not.toBe(a);
    expect(a).not.toContain("arm");
    expect(p.robot(c1, null)).toBeNull();
  });

  it("gives API key pseudonyms that are version-8 UUIDs, never the id", () => {
    const id = randomUUID();
    const k = p.apiKey(c1, id);
    expect(k).toMatch(KEY_PSEUDONYM);
    expect(k).not.toBe(id);
    expect(id).not.toMatch(KEY_PSEUDONYM);
    expect(p.apiKey(c1, id.toUpperCase())).toBe(k);
    expect(p.apiKey(c2, id)).not.toBe(k);
    expect(p.apiKey(c1, null)).toBeNull();
  });

  it("is idempotent: a pseudonym maps to itself", () => {
    const r = p.robot(c1, "arm-1");
    const k = p.apiKey(c1, randomUUID());
    expect(p.robot(c1, r)).toBe(r);
    expect(p.apiKey(c1, k)).toBe(k);
  });

  it("computes HMAC-SHA256 under HMAC(SECRET_KEY, 'analytics-pseudonym/v1')", () => {
    const key = createHmac("sha256", SECRET).update("analytics-pseudonym/v1").digest();
    const want = createHmac("sha256", key).update(`robot\u0000${c1}\u0000arm-1`).digest();
    expect(p.mac("robot", c1, "arm-1")).toEqual(want);
    expect(p.robot(c1, "arm-1")).toBe(`anon_${want.subarray(0, 16).toString("hex")}`);
    expect(p.mac("robot", c1, "ü".repeat(300))).toEqual(
      createHmac("sha256", key)
        .update(`robot\u0000${c1}\u0000${"ü".repeat(300)}`)
        .digest(),
    );
  });
});
