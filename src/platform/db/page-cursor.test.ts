import { describe, expect, it } from "vitest";
import { AppError } from "../errors.ts";
import { decodePageCursor, encodePageCursor, pageOf } from "./page-cursor.ts";

const ID = "2d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

describe("page cursors", () => {
  it("round-trips (created_at, id)", () => {
    const c = { createdAt: "2026-12-06T08:00:00.123Z", id: ID };
    expect(decodePageCursor(encodePageCursor(c))).toEqual(c);
  });

  it("refuses what this API did not issue with 400 invalid_request at /cursor", () => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    for (const bad of [
      "",
      "not-base64!",
      b64({ a: 1 }),
      b64(["2026-01-01T00:00:00Z"]),
      b64(["x", ID]),
      b64(["2026-01-01T00:00:00Z", "nope"]),
      b64(["99999-01-01T00:00:00Z", ID]),
    ]) {
      let caught: unknown;
      try {
        decodePageCursor(bad);
      } catch (e) {
        caught = e;
      }
      expect(caught, bad).toBeInstanceOf(AppError);
      expect((caught as AppError).status).toBe(400);
      expect((caught as AppError).code).toBe("invalid_request");
    }
  });

  it("pageOf keeps `limit` rows and gives the next cursor only when the extra row exists", () => {
    const at = (s: number) => ({ createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, s)), id: ID });
    const full = pageOf([at(3), at(2), at(1)], 2);
    expect(full.page).toHaveLength(2);
    expect(decodePageCursor(full.nextCursor as string)).toEqual({ createdAt: "2026-01-01T00:00:02.000Z", id: ID });
    expect(pageOf([at(3), at(2)], 2).nextCursor).toBeNull();
    expect(pageOf([], 2)).toEqual({ page: [], nextCursor: null });
  });
});
