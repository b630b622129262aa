import { describe, expect, it } from "vitest";
import { ADVISORY_LOCKS } from "./advisory-locks.ts";

describe("advisory lock ids", () => {
  it("are distinct integers PostgreSQL accepts (bigint, here within int32)", () => {
    const ids = Object.values(ADVISORY_LOCKS);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(Number.isInteger(id) && id > 0 && id < 2 ** 31).toBe(true);
  });
});
