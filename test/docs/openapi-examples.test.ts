import { Ajv, type ErrorObject } from "ajv";
import formats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestContext } from "../helpers/app.ts";

/**
 * Every operation of /openapi.json has a declared tag and an example for its request body (each
 * media type) and for its success response (each media type), and every example is valid against
 * the schema it illustrates, nested `examples` of fields included. Examples are what the docs page
 * shows and what "Try it out" sends: a wrong one misleads, so ajv checks them here.
 */

type Schema = Record<string, unknown>;
interface Media {
  schema?: Schema;
  example?: unknown;
  examples?: Record<string, { value?: unknown }>;
}
interface Operation {
  tags?: string[];
  requestBody?: { content?: Record<string, Media> };
  responses?: Record<string, { content?: Record<string, Media> }>;
}
interface OpenApiDoc {
  tags: { name: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas?: Record<string, Schema> };
}

const METHODS = new Set(["get", "put", "post", "patch", "delete", "head", "options"]);

let t: TestContext;
let doc: OpenApiDoc;
beforeAll(async () => {
  t = await buildTestApp({ env: { MODELS_WARM_UP: "false" } });
  const res = await t.app.inject({ method: "GET", url: "/openapi.json" });
  expect(res.statusCode).toBe(200);
  doc = res.json() as OpenApiDoc;
});
afterAll(async () => {
  await t?.close();
});

function operations(): { key: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([p, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.has(m))
      .map(([m, op]) => ({ key: `${m.toUpperCase()} ${p}`, op })),
  );
}

/** Inlines `#/components/schemas/X` references (the document has no recursive schemas). */
function resolve(node: unknown, seen: readonly string[] = []): unknown {
  if (Array.isArray(node)) return node.map((n) => resolve(n, seen));
  if (node === null || typeof node !== "object") return node;
  const o = node as Schema;
  if (typeof o.$ref === "string") {
    const name = /^#\/components\/schemas\/(.+)$/.exec(o.$ref)?.[1];
    const target = name === undefined ? undefined : doc.components.schemas?.[name];
    if (name === undefined || target === undefined) throw new Error(`unresolvable $ref ${o.$ref}`);
    if (seen.includes(name)) throw new Error(`recursive $ref ${o.$ref}`);
    const { $ref: _ref, ...rest } = o;
    return { ...(resolve(target, [...seen, name]) as Schema), ...(resolve(rest, seen) as Schema) };
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, resolve(v, seen)]));
}

/** The examples of a media type: its own `example`/`examples`, else its schema's `examples`. */
function examplesOf(media: Media): unknown[] {
  if (media.example !== undefined) return [media.example];
  if (media.examples !== undefined) return Object.values(media.examples).map((e) => e.value);
  const schema = resolve(media.schema ?? {}) as Schema;
  return Array.isArray(schema.examples) ? schema.examples : [];
}

/** Subschemas under these keys are schemas; anything else (e.g. `examples`, `enum`) is data. */
const SCHEMA_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions"]);
const SCHEMA_VALUES = new Set([
  "items",
  "additionalProperties",
  "not",
  "if",
  "then",
  "else",
  "contains",
  "propertyNames",
  "unevaluatedProperties",
  "unevaluatedItems",
]);
const SCHEMA_LISTS = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);

/** Every schema with `examples` inside `schema` (itself included), with a path for messages. */
function schemasWithExamples(schema: unknown, at: string, out: { at: string; schema: Schema }[] = []) {
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) return out;
  const s = schema as Schema;
  if (Array.isArray(s.examples)) out.push({ at, schema: s });
  for (const [k, v] of Object.entries(s)) {
    if (SCHEMA_MAPS.has(k) && v !== null && typeof v === "object") {
      for (const [name, sub] of Object.entries(v)) schemasWithExamples(sub, `${at}/${k}/${name}`, out);
    } else if (SCHEMA_VALUES.has(k)) {
      schemasWithExamples(v, `${at}/${k}`, out);
    } else if (SCHEMA_LISTS.has(k) && Array.isArray(v)) {
      v.forEach((sub, i) => {
        schemasWithExamples(sub, `${at}/${k}/${i}`, out);
      });
    }
  }
  return out;
}

function validator() {
  // No coercion, no defaults, no removal: an example must be valid exactly as written.
  const ajv = new Ajv({ strict: false, allErrors: true, coerceTypes: false, useDefaults: false });
  formats.default(ajv); // a CommonJS module: its default export is on `default`
  return (schema: Schema, value: unknown): string[] => {
    const validate = ajv.compile(schema);
    if (validate(structuredClone(value))) return [];
    return (validate.errors ?? []).map((e: ErrorObject) => `${e.instancePath || "/"} ${e.message ?? ""}`);
  };
}

describe("OpenAPI document", () => {
  it("tags every operation with a declared tag", () => {
    const declared = new Set(doc.tags.map((tag) => tag.name));
    const ops = operations();
    expect(ops.length).toBeGreaterThan(30);
    const untagged = ops.filter(({ op }) => (op.tags ?? []).length === 0).map(({ key }) => key);
    const undeclared = ops.flatMap(({ key, op }) =>
      (op.tags ?? []).filter((tag) => !declared.has(tag)).map((tag) => `${key}: ${tag}`),
    );
    expect(untagged).toEqual([]);
    expect(undeclared).toEqual([]);
  });

  it("has an example for every request body and success response", () => {
    const missing: string[] = [];
    for (const { key, op } of operations()) {
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        if (examplesOf(media).length === 0) missing.push(`${key} request ${type}`);
      }
      const success = Object.entries(op.responses ?? {}).filter(([status]) => /^2/.test(status));
      if (success.length === 0 && !Object.hasOwn(op.responses ?? {}, "101"))
        missing.push(`${key}: no success response`);
      for (const [status, response] of success) {
        for (const [type, media] of Object.entries(response.content ?? {})) {
          if (examplesOf(media).length === 0) missing.push(`${key} ${status} ${type}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });

  it("has only examples that are valid against their schemas", () => {
    const check = validator();
    const invalid: string[] = [];
    let checked = 0;
    const media = (where: string, m: Media) => {
      const schema = resolve(m.schema ?? {}) as Schema;
      for (const [i, example] of examplesOf(m).entries()) {
        checked++;
        for (const e of check(schema, example)) invalid.push(`${where} example ${i}: ${e}`);
      }
      // Examples of single fields (`"examples": ["arm-3"]`) are shown too; they must hold as well.
      for (const { at, schema: sub } of schemasWithExamples(schema, "")) {
        if (sub === schema) continue;
        for (const [i, example] of (sub.examples as unknown[]).entries()) {
          checked++;
          for (const e of check(sub, example)) invalid.push(`${where} ${at} example ${i}: ${e}`);
        }
      }
    };
    for (const { key, op } of operations()) {
      for (const [type, m] of Object.entries(op.requestBody?.content ?? {})) media(`${key} request ${type}`, m);
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        for (const [type, m] of Object.entries(response.content ?? {})) media(`${key} ${status} ${type}`, m);
      }
      const params = (op as { parameters?: { name: string; in: string; schema?: Schema }[] }).parameters ?? [];
      for (const p of params) media(`${key} ${p.in} ${p.name}`, { schema: p.schema ?? {} });
    }
    expect(checked).toBeGreaterThan(50);
    expect(invalid).toEqual([]);
  });

  it("documents every problem response as application/problem+json (what the server sends), never application/json", () => {
    const isProblem = (m: Media) => typeof m.schema?.$ref === "string" && /(^|\/)Problem#?$/.test(m.schema.$ref);
    const wrong: string[] = [];
    let problems = 0;
    for (const { key, op } of operations()) {
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        for (const [type, m] of Object.entries(response.content ?? {})) {
          if (!isProblem(m)) continue;
          problems++;
          if (type !== "application/problem+json") wrong.push(`${key} ${status} ${type}`);
        }
      }
    }
    expect(problems).toBeGreaterThan(100);
    expect(wrong).toEqual([]);
  });

  it("fails on an example that does not match its schema (the check can fail)", () => {
    const check = validator();
    const schema = {
      type: "object",
      required: ["id"],
      properties: { id: { type: "string", format: "uuid" } },
      additionalProperties: false,
    };
    expect(check(schema, { id: "0b8f6f8e-5d0e-4d52-9a55-3f1f3c7d9a10" })).toEqual([]);
    expect(check(schema, { id: "not-a-uuid" })).not.toEqual([]);
    expect(check(schema, { id: "0b8f6f8e-5d0e-4d52-9a55-3f1f3c7d9a10", extra: 1 })).not.toEqual([]);
  });
});
