import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { keyCheckedJsonParser, POISON_WALK_DEPTH, prototypePoisoned, secureJsonParser } from "./edge-guards.ts";

const nest = (depth: number, inner: string) => '{"a":['.repeat(depth) + inner + "]}".repeat(depth);

describe("prototypePoisoned", () => {
  it("finds __proto__ and constructor.prototype keys at any depth within the walk", () => {
    expect(prototypePoisoned(JSON.parse('{"__proto__":1}'))).toBe(true);
    expect(prototypePoisoned(JSON.parse('{"a":[1,{"b":{"__proto__":null}}]}'))).toBe(true);
    expect(prototypePoisoned(JSON.parse('[{"constructor":{"prototype":0}}]'))).toBe(true);
    expect(prototypePoisoned(JSON.parse(nest(10, '{"constructor":{"prototype":{}}}')))).toBe(true);
  });

  it("passes look-alikes and primitives", () => {
    for (const text of [
      '{"constructor":"x","prototype":{}}',
      '{"constructor":{"name":"x"}}',
      '{"constructor":null}',
      '{"constructor":["prototype"]}',
      '{"k":"__proto__"}',
      '"__proto__"',
      "null",
      "[]",
    ]) {
      expect(prototypePoisoned(JSON.parse(text)), text).toBe(false);
    }
  });

  it("answers undefined past the depth limit instead of walking on", () => {
    // Objects and arrays are a level each: {"a":[1]} is two deep.
    expect(prototypePoisoned(JSON.parse(nest(1, "1")), 1)).toBe(false);
    expect(prototypePoisoned(JSON.parse(nest(1, "{}")), 1)).toBeUndefined();
    expect(prototypePoisoned(JSON.parse(nest(POISON_WALK_DEPTH + 1, "{}")))).toBeUndefined();
  });
});

describe("keyCheckedJsonParser agrees with secure-json-parse", () => {
  const app = Fastify();
  const fast = keyCheckedJsonParser(app);
  const secure = secureJsonParser(app);
  const texts = [
    '{"a":1}',
    "\ufeff" + '{"a":1}',
    '{"__proto__":{"x":1}}',
    '{"\\u005f_proto__":1}',
    '{"constructor":{"prototype":1}}',
    '{"c\\u006fnstructor":{"prototype":1}}',
    '{"constructor":{"prototyp":1}}',
    '{"x":[{"y":{"__proto__":[]}}]}',
    nest(POISON_WALK_DEPTH + 5, '{"__proto__":1}'),
    nest(POISON_WALK_DEPTH + 5, '{"constructor":{"prototype":1}}'),
    nest(POISON_WALK_DEPTH + 5, '{"constructor":1}'),
    '"text"',
    "12",
    "",
    "{",
    '{"a":1} x',
  ];
  it.each(texts.map((t) => [t.slice(0, 60), t]))("%s", (_label, text) => {
    expect(fast(text)).toEqual(secure(text));
  });
});
