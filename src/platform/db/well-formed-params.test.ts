import { PGlite } from "@electric-sql/pglite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { wellFormedParam, withWellFormedParams } from "./well-formed-params.ts";

describe("wellFormedParam", () => {
  it("replaces lone surrogates by U+FFFD in strings and nested arrays, keeps pairs and other values", () => {
    expect(wellFormedParam("é\udc00")).toBe("é\ufffd");
    expect(wellFormedParam("\ud83d\ude00 \ud83d")).toBe("\ud83d\ude00 \ufffd");
    expect(wellFormedParam([["a\udfff", null], ["b"]])).toEqual([["a\ufffd", null], ["b"]]);
    const clean = ["x", "y"];
    expect(wellFormedParam(clean)).toBe(clean);
    const bytes = new Uint8Array([0xed, 0xb0, 0x80]);
    expect(wellFormedParam(bytes)).toBe(bytes);
    expect(wellFormedParam(7)).toBe(7);
  });
});

describe("withWellFormedParams (PGlite)", () => {
  let client: PGlite;
  beforeAll(async () => {
    client = new PGlite();
    await client.waitReady;
  });
  afterAll(async () => {
    await client?.close();
  });

  // A lone low surrogate after another non-ASCII code unit: PGlite alone truncates the text
  // parameter (the next one overwrites its tail) and breaks the array literal.
  const value = "\f\uda4b};co\udf78\uddb7= ";
  const stored = "\f\ufffd};co\ufffd\ufffd= ";

  it("PGlite itself mangles such a parameter (the reason for the wrapper)", async () => {
    const res = await client.query<{ t: string }>("select $1::text as t, $2::int as n", [value, 7]);
    expect(res.rows[0]?.t).not.toBe(stored);
    await expect(client.query("select $1::text[] as a", [[value]])).rejects.toThrow(/malformed array literal/);
  });

  it("stores what PostgreSQL stores, in queries and in transactions", async () => {
    const guarded = withWellFormedParams(client);
    expect(guarded).toBeInstanceOf(PGlite);
    const res = await guarded.query<{ t: string; a: string[] }>("select $1::text as t, $2::text[] as a", [
      value,
      [value, null],
    ]);
    expect(res.rows[0]).toEqual({ t: stored, a: [stored, null] });
    const inTx = await guarded.transaction(async (tx) => {
      const r = await tx.query<{ a: string[] }>("select $1::text[] as a", [[value]]);
      expect(tx.closed).toBe(false);
      return r.rows[0]?.a;
    });
    expect(inTx).toEqual([stored]);
    expect(guarded.closed).toBe(false);
  });
});
