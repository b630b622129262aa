import fc from "fast-check";
import {
  anyJson,
  Bin,
  deepJson,
  edgeDate,
  edgeNumber,
  encodeAny,
  hostileString,
  type ImageSeeds,
  imageBytes,
  type JV,
  jsonNumpyDoc,
  msgpackNdarray,
  msgpackOddity,
  Obj,
  obj,
  toJson,
  toMsgpack,
  validNdarray,
} from "./values.ts";

/**
 * Fuzz cases: one HTTP request per route found in the app (valid-ish bodies mutated from its
 * OpenAPI schema, plus garbage), or one WebSocket conversation with /v1/stream or /v1/openpi.
 */

export type PrincipalKind = "none" | "apiKey" | "session" | "admin" | "junk";

export interface RouteInfo {
  readonly method: string;
  /** Fastify form: `/v1/api-keys/:key_id`, `/docs/*`, `*`. */
  readonly path: string;
  /** The OpenAPI operation of this method and path, when documented. */
  readonly op: OpenApiOperation | undefined;
}

export interface OpenApiOperation {
  readonly parameters?: { name: string; in: string; required?: boolean; schema?: Schema }[];
  readonly requestBody?: { content?: Record<string, { schema?: Schema }> };
}

export type Schema = Record<string, unknown>;

export interface HttpCase {
  readonly kind: "http";
  readonly target: string;
  readonly method: string;
  readonly url: string;
  readonly principal: PrincipalKind;
  readonly authStyle: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  readonly remote: string;
}

export interface WsMessage {
  readonly binary: boolean;
  readonly data: Buffer;
}

export interface WsCase {
  readonly kind: "ws";
  readonly target: "WS /v1/stream" | "WS /v1/openpi";
  readonly path: string;
  readonly principal: PrincipalKind;
  readonly authStyle: number;
  /** Browser-style authentication: this first message, built with the principal's key. */
  readonly authMessage: ((key: string) => WsMessage) | null;
  readonly messages: WsMessage[];
}

export type FuzzCase = HttpCase | WsCase;

/** Ids the server knows, so some generated path parameters hit real rows. */
export interface KnownIds {
  keyIds: string[];
  robotIds: string[];
  inferenceIds: string[];
}

// ---------------------------------------------------------------------------------------------
// Routes

/** Every method+path of the app, from its own route tree (hidden routes too), with OpenAPI ops. */
export function enumerateRoutes(printed: string, openapi: { paths: Record<string, Record<string, OpenApiOperation>> }) {
  const routes: RouteInfo[] = [];
  const stack: string[] = [];
  for (const line of printed.split("\n")) {
    const m = /^([│ ]*)[├└]── (.+?) \(([A-Z, ]+)\)$/u.exec(line);
    if (m === null) continue;
    const depth = (m[1] as string).length / 4;
    const segment = m[2] as string;
    stack.length = depth;
    const parent = stack[depth - 1] ?? "";
    // find-my-way prints a wildcard child as `*`: the route is `<parent>/*`.
    const full = segment === "*" && !parent.endsWith("/") ? `${parent}/*` : parent + segment;
    stack[depth] = full;
    for (const method of (m[3] as string).split(", ")) {
      const oaPath = full.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
      const op = openapi.paths[oaPath]?.[method.toLowerCase()];
      routes.push({ method, path: full, op });
    }
  }
  return routes;
}

/** `arb` in `percent`% of the values, null otherwise. */
export function sometimes<T>(arb: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | null> {
  return fc.oneof({ arbitrary: fc.constant(null), weight: 100 - percent }, { arbitrary: arb, weight: percent });
}

// ---------------------------------------------------------------------------------------------
// Schema-driven values

const KNOWN_STRING_FIELDS: Record<string, string[]> = {
  robot_id: ["arm-1", "arm-2", "a", "A.b_c:d/e-f"],
  model: ["mock-openvla-7b", "demo-vla-tiny"],
  unnorm_key: ["bridge_orig", "fractal20220817_data", "demo"],
  instruction: ["pick up the red block"],
  email: ["fuzz@example.com", "a@b.co"],
  grant_type: ["password", "refresh_token"],
};

/** A value for `schema`: mostly schema-shaped (so validation passes and the handler runs), sometimes hostile. */
export function fromSchema(schema: Schema | undefined, ctx: SchemaCtx, name = "", depth = 0): fc.Arbitrary<JV> {
  const hostile = fc.oneof(anyJson, edgeNumber, hostileString as fc.Arbitrary<JV>);
  if (schema === undefined || depth > 6) return hostile;
  const shaped = shapedFromSchema(schema, ctx, name, depth);
  return fc.oneof({ arbitrary: shaped, weight: 6 }, { arbitrary: hostile, weight: 1 });
}

export interface SchemaCtx {
  readonly images: ImageSeeds;
}

/**
 * The plainest valid value of `schema` (required members only), so a case can be a valid
 * request with one member mutated and reach the handler rather than stop at validation.
 */
export function validFromSchema(schema: Schema | undefined, ctx: SchemaCtx, route: string, name = "", depth = 0): JV {
  if (schema === undefined || depth > 6) return null;
  if (name === "image") {
    if (route === "/act") return validJsonNumpyImage;
    return ctx.images.jpeg.toString("base64");
  }
  if (name === "robot_state") {
    const v = obj({ ee_position: [0.1, 0.2, 0.3], gripper: 1 });
    return schema.type === "string" ? toJson(v) : v;
  }
  const alts = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (alts?.[0] !== undefined) return validFromSchema(alts[0], ctx, route, name, depth + 1);
  if (Array.isArray(schema.enum)) return (schema.enum[0] ?? null) as JV;
  switch (schema.type) {
    case "string": {
      const known = KNOWN_STRING_FIELDS[name]?.[0];
      if (known !== undefined) return known;
      if (schema.format === "date-time") return "2026-12-01T00:00:00Z";
      if (schema.format === "uuid") return "00000000-0000-4000-8000-000000000000";
      if (schema.format === "email") return "fuzz@example.com";
      const ex = Array.isArray(schema.examples) ? schema.examples[0] : undefined;
      if (typeof ex === "string") return ex;
      return "x".repeat(Math.max(1, Number(schema.minLength ?? 1)));
    }
    case "integer":
    case "number":
      return typeof schema.minimum === "number" ? schema.minimum : 1;
    case "boolean":
      return true;
    case "array": {
      const n = Number(schema.minItems ?? 0);
      return Array.from({ length: n }, () => validFromSchema(schema.items as Schema, ctx, route, name, depth + 1));
    }
    default: {
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const required = new Set((schema.required ?? []) as string[]);
      const entries: [string, JV][] = [];
      for (const [k, p] of Object.entries(props)) {
        // unnorm_key too: the mock model has two sets of statistics and no default.
        if (required.has(k) || k === "unnorm_key" || (route === "/act" && ["image", "instruction"].includes(k))) {
          entries.push([k, validFromSchema(p, ctx, route, k, depth + 1)]);
        }
      }
      return new Obj(entries);
    }
  }
}

const validJsonNumpyImage: JV = obj({
  __numpy__: Buffer.alloc(16 * 16 * 3, 90).toString("base64"),
  dtype: "|u1",
  shape: [16, 16, 3],
});

/** A valid body with at most one member replaced by a generated (often hostile) value. */
function mutatedValid(schema: Schema | undefined, ctx: SchemaCtx, route: string): fc.Arbitrary<JV> {
  const base = validFromSchema(schema, ctx, route);
  if (!(base instanceof Obj)) return fc.constant(base);
  const props = (schema?.properties ?? {}) as Record<string, Schema>;
  const names = Object.keys(props);
  if (names.length === 0) return fc.constant(base);
  return fc.oneof(
    fc.constant(base),
    fc
      .constantFrom(...names)
      .chain((k) =>
        fromSchema(props[k], ctx, k).map((v) => new Obj([...base.entries.filter(([n]) => n !== k), [k, v]])),
      ),
  );
}

/** A plausible value with a NUL (or another C0 control) inside: valid UTF-8 that PostgreSQL text refuses. */
function withNul(base: string): fc.Arbitrary<JV> {
  return fc
    .tuple(fc.nat(base.length), fc.constantFrom("\u0000", "\u0000", "\u0001", "\u001f"))
    .map(([at, c]) => `${base.slice(0, at)}${c}${base.slice(at)}`);
}

function stringFor(schema: Schema, ctx: SchemaCtx, name: string): fc.Arbitrary<JV> {
  if (name === "image") return imageValue(ctx);
  if (name === "encoded") return encodedDoc(ctx);
  if (name === "robot_state") {
    return fc.oneof(
      robotState.map((v) => toJson(v)),
      hostileString,
    );
  }
  const options: fc.Arbitrary<JV>[] = [hostileString, withNul(KNOWN_STRING_FIELDS[name]?.[0] ?? "x")];
  const known = KNOWN_STRING_FIELDS[name];
  if (known !== undefined)
    options.push(fc.constantFrom(...known), fc.constantFrom(...known), fc.constantFrom(...known));
  if (schema.format === "date-time" || name === "from" || name === "to") options.push(edgeDate, edgeDate);
  if (schema.format === "uuid") options.push(fc.uuid(), fc.uuid());
  if (schema.format === "email") options.push(fc.emailAddress());
  if (Array.isArray(schema.examples)) {
    const ex = (schema.examples as unknown[]).filter((e) => typeof e === "string") as string[];
    if (ex.length > 0) options.push(fc.constantFrom(...ex));
  }
  if (typeof schema.pattern === "string") {
    try {
      options.push(fc.stringMatching(new RegExp(schema.pattern), { maxLength: 40 }));
    } catch {
      // Patterns fast-check cannot walk get hostile strings only.
    }
  }
  if (schema.minLength !== undefined || schema.maxLength !== undefined) {
    const min = Number(schema.minLength ?? 0);
    const max = Number(schema.maxLength ?? min + 10);
    options.push(
      fc.constantFrom("x".repeat(min), "x".repeat(Math.min(max, 5000)), "x".repeat(Math.min(max + 1, 5001))),
    );
  }
  return fc.oneof(...options);
}

function numberFor(schema: Schema, integer: boolean): fc.Arbitrary<JV> {
  const min = typeof schema.minimum === "number" ? schema.minimum : undefined;
  const max = typeof schema.maximum === "number" ? schema.maximum : undefined;
  const edges: JV[] = [];
  for (const b of [min, max]) if (b !== undefined) edges.push(b, b - 1, b + 1, b - 0.5, b + 0.5);
  const inRange = integer
    ? fc.integer({ min: Math.max(min ?? -1000, -(2 ** 31)), max: Math.min(max ?? 1000, 2 ** 31 - 1) })
    : fc.double({ min: min ?? -1000, max: max ?? 1000, noNaN: true });
  return fc.oneof(inRange, inRange, edgeNumber, ...(edges.length > 0 ? [fc.constantFrom(...edges)] : []));
}

function shapedFromSchema(schema: Schema, ctx: SchemaCtx, name: string, depth: number): fc.Arbitrary<JV> {
  const alts = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (alts !== undefined) return fc.oneof(...alts.map((s) => shapedFromSchema(s, ctx, name, depth + 1)));
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as JV[]));
  if (name === "image") return imageValue(ctx);
  switch (schema.type) {
    case "string":
      return stringFor(schema, ctx, name);
    case "integer":
      return numberFor(schema, true);
    case "number":
      return numberFor(schema, false);
    case "boolean":
      return fc.oneof(fc.boolean(), fc.constantFrom<JV>("true", 1, 0, null));
    case "null":
      return fc.constant(null);
    case "array": {
      const item = fromSchema(schema.items as Schema | undefined, ctx, name, depth + 1);
      const maxItems = typeof schema.maxItems === "number" ? schema.maxItems : 4;
      return fc.array(item, { maxLength: Math.min(maxItems + 1, 10) });
    }
    case "object":
    case undefined: {
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const required = new Set((schema.required ?? []) as string[]);
      const keys = Object.keys(props);
      if (keys.length === 0) return anyJson;
      const fields = keys.map((k) =>
        fc.tuple(
          fc.constant(k),
          fromSchema(props[k], ctx, k, depth + 1),
          fc.integer({ min: 0, max: 9 }).map((r) => (required.has(k) ? r > 0 : r > 4)),
        ),
      );
      return fc.tuple(fc.tuple(...fields), sometimes(fc.tuple(hostileString, anyJson), 12)).map(([fs, extra]) => {
        const entries = fs.filter(([, , keep]) => keep).map(([k, v]) => [k, v] as [string, JV]);
        if (extra !== null) entries.push(extra);
        return new Obj(entries);
      });
    }
    default:
      return anyJson;
  }
}

const finite = fc.oneof(fc.double({ min: -2, max: 2, noNaN: true }), edgeNumber);
export const robotState: fc.Arbitrary<JV> = fc.oneof(
  fc
    .record(
      {
        ee_position: fc.array(finite, { minLength: 2, maxLength: 4 }),
        ee_orientation: fc.array(finite, { minLength: 2, maxLength: 5 }),
        gripper: finite,
      },
      { requiredKeys: ["ee_position"] },
    )
    .map((r) => obj(r as Record<string, JV>)),
  anyJson,
);

/** An `image` value in JSON: base64 (maybe a data: URL) of an image file, or a json_numpy doc. */
export function imageValue(ctx: SchemaCtx): fc.Arbitrary<JV> {
  return fc.oneof(
    { arbitrary: imageBytes(ctx.images).map((b) => b.toString("base64")), weight: 4 },
    {
      arbitrary: fc
        .tuple(fc.constantFrom("image/jpeg", "image/png", "text/plain", ""), imageBytes(ctx.images))
        .map(([t, b]) => `data:${t};base64,${b.toString("base64")}`),
      weight: 1,
    },
    { arbitrary: jsonNumpyDoc, weight: 3 },
    { arbitrary: hostileString, weight: 1 },
  );
}

/** `/act`'s `encoded`: the JSON text of an act document (maybe lying, poisoned or broken). */
function encodedDoc(ctx: SchemaCtx): fc.Arbitrary<JV> {
  const doc = fc
    .record({
      image: fc.oneof(jsonNumpyDoc, imageValue(ctx)),
      instruction: hostileString,
      unnorm_key: fc.constantFrom<JV>("bridge_orig", "nope", "__proto__"),
    })
    .map((r) => obj(r));
  return fc.oneof(
    doc.map(toJson),
    fc.tuple(doc, fc.nat()).map(([d, n]) => {
      const t = toJson(d);
      return t.slice(0, n % (t.length + 1));
    }),
    anyJson.map(toJson),
    fc.constantFrom(
      '{"__proto__": {"image": 1}}',
      '{"constructor": {"prototype": {"x": 1}}}',
      '{"__proto__": null, "instruction": "a"}',
      '"just a string"',
      "[1,2,3]",
      "null",
      "",
      "{",
      "\u0000",
      `{"encoded": "{\\"encoded\\": \\"{}\\"}"}`,
    ),
    deepJson.map((r) => r.text),
  );
}

// ---------------------------------------------------------------------------------------------
// HTTP bodies

const textEncoders: Record<string, (v: JV) => string> = {
  json: toJson,
  form: (v) => {
    if (!(v instanceof Obj)) return `v=${encodeAny(toJson(v))}`;
    return v.entries.map(([k, x]) => `${encodeAny(k)}=${encodeAny(typeof x === "string" ? x : toJson(x))}`).join("&");
  },
};

interface Part {
  readonly name: string | null;
  readonly filename?: string;
  readonly contentType?: string;
  readonly data: Buffer;
}

function multipart(parts: Part[], boundary: string, crlf: string): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}${crlf}Content-Disposition: form-data`;
    if (p.name !== null) head += `; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += crlf;
    if (p.contentType !== undefined) head += `Content-Type: ${p.contentType}${crlf}`;
    chunks.push(Buffer.from(head + crlf, "utf8"), p.data, Buffer.from(crlf));
  }
  chunks.push(Buffer.from(`--${boundary}--${crlf}`));
  return Buffer.concat(chunks);
}

/** multipart/form-data: the inference form, wrong part names, truncated, no or wrong boundary. */
function multipartBody(ctx: SchemaCtx, schema: Schema | undefined): fc.Arbitrary<{ body: Buffer; type: string }> {
  const props = Object.keys((schema?.properties ?? { image: {}, instruction: {}, robot_id: {} }) as object);
  const field: fc.Arbitrary<[string, JV]> = fc.tuple(
    fc.oneof(
      fc.constantFrom(...props),
      hostileString.map((s) => s.replace(/"/g, "")),
    ),
    fc.oneof(hostileString, fc.constantFrom(...Object.values(KNOWN_STRING_FIELDS).flat()), robotState.map(toJson)),
  );
  const filePart = fc
    .tuple(
      imageBytes(ctx.images),
      fc.constantFrom("image", "image", "file", "img", ""),
      fc.constantFrom("a.jpg", "a.png", "x\u0000.jpg", "", "../../x"),
      fc.constantFrom("image/jpeg", "image/png", "application/octet-stream", "text/plain", undefined),
      fc.constantFrom(0, 0, 0, 300_000, 1_200_000),
    )
    .map(
      ([data, name, filename, contentType, pad]): Part => ({
        name,
        filename,
        ...(contentType === undefined ? {} : { contentType }),
        data: pad === 0 ? data : Buffer.concat([data, Buffer.alloc(pad, 0x41)]),
      }),
    );
  return fc
    .record({
      fields: fc.oneof<fc.Arbitrary<[string, JV][]>[]>(
        fc.array(field, { maxLength: 6 }),
        fc
          .array(field, { maxLength: 1 })
          .map((extra) => [
            ["instruction", "pick up the red block"] as [string, JV],
            ["robot_id", "arm-1"] as [string, JV],
            ["unnorm_key", "bridge_orig"] as [string, JV],
            ...extra,
          ]),
      ),
      files: fc.array(filePart, { maxLength: 3 }),
      nameless: fc.boolean(),
      boundary: fc.constantFrom("fuzzBoundary123", "x", "a".repeat(70), "-- --"),
      crlf: fc.constantFrom("\r\n", "\r\n", "\r\n", "\n"),
      damage: fc.constantFrom("none", "none", "none", "truncate", "no-boundary", "wrong-boundary", "no-end", "garbage"),
      cut: fc.nat(),
    })
    .map((r) => {
      const parts: Part[] = r.fields.map(([name, v]) => ({
        name: r.nameless ? null : name,
        data: Buffer.from(typeof v === "string" ? v : toJson(v)),
      }));
      // The usual layout: text fields first, then the file (what clients send).
      parts.push(...r.files);
      let body = multipart(parts, r.boundary, r.crlf);
      let type = `multipart/form-data; boundary=${r.boundary}`;
      if (r.damage === "truncate") body = body.subarray(0, r.cut % (body.length + 1));
      if (r.damage === "no-boundary") type = "multipart/form-data";
      if (r.damage === "wrong-boundary") type = "multipart/form-data; boundary=somethingElse";
      if (r.damage === "no-end") body = body.subarray(0, Math.max(0, body.length - r.boundary.length - 6));
      if (r.damage === "garbage") body = Buffer.from("this is not multipart at all\u0000\r\n--\r\n");
      return { body, type };
    });
}

function bodyArb(
  route: RouteInfo,
  ctx: SchemaCtx,
): fc.Arbitrary<{ body: Buffer | undefined; type: string | undefined }> {
  const content = route.op?.requestBody?.content ?? {};
  const jsonSchema = content["application/json"]?.schema ?? content["application/x-www-form-urlencoded"]?.schema;
  const shaped = fromSchema(jsonSchema, ctx);
  const valid = mutatedValid(jsonSchema, ctx, route.path);
  const text = (t: string) => Buffer.from(t, "utf8");
  const formOnly =
    content["application/json"] === undefined && content["application/x-www-form-urlencoded"] !== undefined;
  return fc.oneof(
    {
      arbitrary: valid.map((v) =>
        formOnly
          ? { body: text(textEncoders.form?.(v) ?? ""), type: "application/x-www-form-urlencoded" }
          : { body: text(toJson(v)), type: "application/json" },
      ),
      weight: jsonSchema === undefined ? 1 : 8,
    },
    { arbitrary: shaped.map((v) => ({ body: text(toJson(v)), type: "application/json" })), weight: 8 },
    {
      arbitrary: shaped.map((v) => ({
        body: text(textEncoders.form?.(v) ?? ""),
        type: "application/x-www-form-urlencoded",
      })),
      weight: content["application/x-www-form-urlencoded"] === undefined ? 1 : 5,
    },
    {
      arbitrary: multipartBody(ctx, content["multipart/form-data"]?.schema),
      weight: content["multipart/form-data"] === undefined ? 1 : 6,
    },
    { arbitrary: anyJson.map((v) => ({ body: text(toJson(v)), type: "application/json" })), weight: 2 },
    { arbitrary: deepJson.map((r) => ({ body: text(r.text), type: "application/json" })), weight: 1 },
    {
      // Broken JSON: cut short, NUL bytes, invalid UTF-8, BOM, a content type that lies.
      arbitrary: fc
        .tuple(shaped, fc.nat(), fc.constantFrom("cut", "nul", "utf8", "bom", "utf16"))
        .map(([v, n, how]) => {
          const t = toJson(v);
          if (how === "cut") return { body: text(t.slice(0, n % (t.length + 1))), type: "application/json" };
          if (how === "nul") return { body: Buffer.concat([text(t), Buffer.from([0])]), type: "application/json" };
          if (how === "utf8")
            return { body: Buffer.concat([Buffer.from([0xc3, 0x28, 0xff]), text(t)]), type: "application/json" };
          if (how === "bom")
            return { body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text(t)]), type: "application/json" };
          return { body: Buffer.from(t, "utf16le"), type: "application/json; charset=utf-16" };
        }),
      weight: 2,
    },
    {
      arbitrary: fc
        .tuple(
          fc.oneof(
            shaped.map((v) => text(toJson(v))),
            fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
          ),
          fc.constantFrom(
            "text/plain",
            "application/msgpack",
            "application/octet-stream",
            "image/jpeg",
            "application/json; charset=latin1",
            "application/jsonx",
            "application/*",
            "multipart/mixed; boundary=x",
            "; ;",
            undefined,
          ),
        )
        .map(([body, type]) => ({ body, type })),
      weight: 2,
    },
    { arbitrary: fc.constant({ body: undefined, type: undefined }), weight: 1 },
    { arbitrary: fc.constant({ body: Buffer.alloc(0), type: "application/json" }), weight: 1 },
  );
}

// ---------------------------------------------------------------------------------------------
// URLs

function pathArb(route: RouteInfo, ctx: SchemaCtx, known: KnownIds): fc.Arbitrary<string> {
  const segments = route.path.split("/");
  const params = route.op?.parameters ?? [];
  const parts = segments.map((seg) => {
    if (seg === "*")
      return fc.oneof(fc.constantFrom("", "index.html", "x/y/z", "%00", "..%2f..%2fetc"), hostileString.map(encodeAny));
    if (!seg.startsWith(":")) return fc.constant(seg);
    const name = seg.slice(1);
    const schema = params.find((p) => p.in === "path" && p.name === name)?.schema;
    const ids =
      name === "key_id" ? known.keyIds : name === "robot_id" ? known.robotIds : name === "id" ? known.inferenceIds : [];
    const options: fc.Arbitrary<string>[] = [
      fromSchema(schema, ctx, name).map((v) => encodeAny(typeof v === "string" ? v : toJson(v))),
      fc.constantFrom("%00", "%", "%zz", "a%00b", "%ED%A0%80", "..", "%2e%2e", "x".repeat(3000)),
    ];
    if (ids.length > 0) options.push(fc.constantFrom(...ids));
    return fc.oneof(...options);
  });
  return fc.tuple(...parts).map((p) => p.join("/") || "/");
}

function queryArb(route: RouteInfo, ctx: SchemaCtx): fc.Arbitrary<string> {
  const params = (route.op?.parameters ?? []).filter((p) => p.in === "query");
  const text = (v: JV) => encodeAny(typeof v === "string" ? v : toJson(v));
  // Half the cases: every parameter valid or absent but one, so the handler runs with that one.
  const mutated = fc.integer({ min: -1, max: Math.max(0, params.length - 1) });
  const documented = params.map((p, i) =>
    fc.tuple(
      fc.constant(p.name),
      fromSchema(p.schema, ctx, p.name).map(text),
      fc.constant(text(validFromSchema(p.schema, ctx, route.path, p.name))),
      fc.constantFrom(0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3),
      fc.constant(i),
    ),
  );
  const extra = fc.array(
    fc.oneof(
      fc.tuple(hostileString, hostileString).map(([k, v]) => `${encodeAny(k)}=${encodeAny(v)}`),
      fc.constantFrom(
        "%00=%00",
        "a=%00",
        "=",
        "&&",
        "a",
        "a[b]=1",
        "a[]=1&a[]=2",
        "%=%",
        "__proto__[x]=1",
        "x=%E0%A4%A",
      ),
    ),
    { maxLength: 3 },
  );
  const extras = sometimes(extra, 25).map((e) => e ?? []);
  return fc
    .tuple(fc.tuple(...documented), extras, fc.constantFrom("", "", "", "?", "#frag"), fc.boolean(), mutated)
    .map(([doc, ex, tail, mostlyValid, which]) => {
      const pairs: string[] = [];
      for (const [name, generated, valid, times, i] of doc) {
        if (mostlyValid) {
          if (i === which) pairs.push(`${name}=${generated}`);
          // Cursors are opaque: only one the API made is valid.
          else if ((times > 1 || (i + which) % 2 === 0) && name !== "cursor") pairs.push(`${name}=${valid}`);
        } else for (let k = 0; k < times; k++) pairs.push(`${name}=${generated}`);
      }
      if (mostlyValid) return pairs.length === 0 ? "" : `?${pairs.join("&")}`;
      pairs.push(...ex);
      return pairs.length === 0 ? tail : `?${pairs.join("&")}${tail}`;
    });
}

const headerText = fc.string({ unit: "grapheme-ascii", maxLength: 60 });

/** One HTTP request to `route`. */
export function httpCaseArb(route: RouteInfo, ctx: SchemaCtx, known: KnownIds): fc.Arbitrary<HttpCase> {
  const withBody = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"].includes(route.method);
  return fc
    .record({
      principal: fc.constantFrom<PrincipalKind>("none", "apiKey", "apiKey", "session", "admin", "junk"),
      authStyle: fc.nat(3),
      path: pathArb(route, ctx, known),
      query: queryArb(route, ctx),
      body: withBody ? bodyArb(route, ctx) : fc.constant({ body: undefined, type: undefined }),
      extraHeaders: fc.array(
        fc.tuple(
          fc.constantFrom(
            "x-request-id",
            "accept",
            "origin",
            "x-robot-id",
            "accept-encoding",
            "x-forwarded-for",
            "range",
          ),
          fc.oneof(
            headerText,
            fc.constantFrom("*/*", "application/problem+json", "null", "arm-1", "gzip, br", "bytes=0-1"),
          ),
        ),
        { maxLength: 2 },
      ),
      remote: fc.integer({ min: 1, max: 250 }),
    })
    .map((r) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of r.extraHeaders) headers[k] = v;
      if (r.body.type !== undefined) headers["content-type"] = r.body.type;
      const path = r.path;
      return {
        kind: "http" as const,
        target: `${route.method} ${route.path}`,
        method: route.method,
        url: `${path}${r.query}`,
        principal: r.principal,
        authStyle: r.authStyle,
        headers,
        body: r.body.body,
        remote: `127.0.${Math.floor(r.remote / 16)}.${r.remote}`,
      };
    });
}

// ---------------------------------------------------------------------------------------------
// WebSocket conversations

const asJsonMsg = (v: JV): WsMessage => ({ binary: false, data: Buffer.from(toJson(v), "utf8") });
const asMsgpackMsg = (v: JV): WsMessage => ({ binary: true, data: toMsgpack(v) });

function streamMessages(ctx: SchemaCtx): fc.Arbitrary<(binary: boolean) => WsMessage> {
  const encode = (v: JV) => (binary: boolean) => (binary ? asMsgpackMsg(v) : asJsonMsg(v));
  const start = fc
    .record(
      {
        robot_id: fc.oneof(fc.constantFrom<JV>("arm-1", "arm-2"), hostileString),
        model: fc.oneof(fc.constantFrom<JV>("mock-openvla-7b", "demo-vla-tiny"), hostileString),
        unnorm_key: fc.oneof(fc.constantFrom<JV>("bridge_orig", "demo"), hostileString),
        instruction: fc.oneof(fc.constant<JV>("pick up the red block"), hostileString),
        target_fps: edgeNumber,
        smoothing: fc.oneof(
          fc
            .record(
              {
                method: fc.constantFrom<JV>("none", "ema", "moving_average", "median"),
                alpha: edgeNumber,
                window: edgeNumber,
                gripper: fc.oneof(fc.boolean(), anyJson),
              },
              { requiredKeys: ["method"] },
            )
            .map((r) => obj(r as Record<string, JV>)),
          anyJson,
        ),
        chunk_aggregation: fc.oneof(fc.constantFrom<JV>("latest", "weighted", "average"), hostileString),
        junk: anyJson,
      },
      { requiredKeys: ["robot_id"] },
    )
    .map((r) => new Obj([["type", "start"], ...(Object.entries(r) as [string, JV][])]));
  const jsonImage = imageValue(ctx);
  const binImage = fc.oneof(
    imageBytes(ctx.images).map((b) => new Bin(b)),
    msgpackNdarray,
    msgpackOddity,
  );
  const frame = fc
    .record(
      {
        seq: fc.oneof({ arbitrary: fc.nat(1000), weight: 4 }, { arbitrary: edgeNumber, weight: 1 }),
        instruction: fc.oneof(fc.constant<JV>("pick up the red block"), hostileString),
        robot_state: robotState,
        timestamp: edgeNumber,
        must_go: fc.oneof(fc.boolean(), anyJson),
      },
      { requiredKeys: ["seq"] },
    )
    .chain((r) =>
      fc.tuple(jsonImage, binImage).map(
        ([ji, bi]) =>
          (binary: boolean) =>
            (binary ? asMsgpackMsg : asJsonMsg)(
              new Obj([["type", "frame"], ["image", binary ? bi : ji], ...(Object.entries(r) as [string, JV][])]),
            ),
      ),
    );
  const validFrame = fc.tuple(fc.nat(1000), fc.boolean()).map(
    ([seq, asArray]) =>
      (binary: boolean) =>
        (binary ? asMsgpackMsg : asJsonMsg)(
          obj({
            type: "frame",
            seq,
            image: binary
              ? asArray
                ? validNdarray
                : new Bin(ctx.images.jpeg)
              : asArray
                ? validJsonNumpyImage
                : ctx.images.jpeg.toString("base64"),
          }),
        ),
  );
  return fc.oneof(
    { arbitrary: start.map(encode), weight: 2 },
    { arbitrary: validFrame, weight: 4 },
    { arbitrary: frame, weight: 6 },
    {
      arbitrary: fc
        .constantFrom<JV>(obj({ type: "stats" }), obj({ type: "stop" }), obj({ type: "stats", x: 1 }))
        .map(encode),
      weight: 1,
    },
    {
      arbitrary: fc
        .tuple(
          fc.oneof(fc.constantFrom<JV>("auth", "start", "frame", "nope", "", "\u0000", 7, null), hostileString),
          anyJson,
        )
        .map(([type, v]) =>
          encode(
            new Obj([
              ["type", type],
              ["x", v],
            ]),
          ),
        ),
      weight: 1,
    },
    { arbitrary: anyJson.map(encode), weight: 1 },
    {
      arbitrary: msgpackOddity.map(
        (odd) => (binary: boolean) =>
          binary
            ? asMsgpackMsg(
                new Obj([
                  ["type", "frame"],
                  ["seq", 1],
                  ["image", odd],
                ]),
              )
            : { binary: false, data: Buffer.from(deepText) },
      ),
      weight: 1,
    },
    { arbitrary: rawGarbage.map((g) => () => g), weight: 1 },
  );
}

const deepText = `${"[".repeat(5_000)}${"]".repeat(5_000)}`;

const rawGarbage: fc.Arbitrary<WsMessage> = fc.oneof(
  fc.uint8Array({ maxLength: 128 }).map((u) => ({ binary: true, data: Buffer.from(u) })),
  fc.uint8Array({ maxLength: 128 }).map((u) => ({ binary: false, data: Buffer.from(u) })),
  fc.constantFrom<WsMessage>(
    { binary: false, data: Buffer.from("") },
    { binary: true, data: Buffer.alloc(0) },
    { binary: false, data: Buffer.from("{") },
    { binary: false, data: Buffer.from('{"type":"start","robot_id":"a\\u0000b"}') },
    // Larger than STREAM_MAX_FRAME_BYTES in the fuzz config (1009).
    { binary: true, data: Buffer.alloc(300 * 1024, 0x91) },
  ),
);

function authMessage(): fc.Arbitrary<(key: string) => WsMessage> {
  return fc.oneof(
    fc.constant((key: string) => asJsonMsg(obj({ type: "auth", api_key: key }))),
    fc.constant((key: string) => asMsgpackMsg(obj({ type: "auth", api_key: key }))),
    fc.tuple(hostileString, anyJson).map(
      ([k, x]) =>
        () =>
          asJsonMsg(
            new Obj([
              ["type", "auth"],
              ["api_key", k],
              ["x", x],
            ]),
          ),
    ),
  );
}

export function streamCaseArb(ctx: SchemaCtx): fc.Arbitrary<WsCase> {
  return fc
    .record({
      principal: fc.constantFrom<PrincipalKind>(
        "apiKey",
        "apiKey",
        "apiKey",
        "apiKey",
        "apiKey",
        "session",
        "none",
        "junk",
      ),
      authStyle: fc.nat(3),
      binary: fc.boolean(),
      viaMessage: fc.boolean(),
      auth: authMessage(),
      opening: fc.constantFrom("valid", "valid", "valid", "none"),
      model: fc.constantFrom("mock-openvla-7b", "mock-openvla-7b", "demo-vla-tiny"),
      msgs: fc.array(streamMessages(ctx), { minLength: 1, maxLength: 4 }),
    })
    .map((r) => {
      const messages = r.msgs.map((m) => m(r.binary));
      if (r.opening === "valid") {
        const start = obj({
          type: "start",
          robot_id: "arm-1",
          instruction: "pick up the red block",
          model: r.model,
          ...(r.model === "mock-openvla-7b" ? { unnorm_key: "bridge_orig" } : {}),
        });
        messages.unshift(r.binary ? asMsgpackMsg(start) : asJsonMsg(start));
      }
      // viaMessage: no headers, a first auth message with the principal's key (browsers).
      const useMsg = r.viaMessage && r.principal !== "none";
      return {
        kind: "ws" as const,
        target: "WS /v1/stream" as const,
        path: "/v1/stream",
        principal: r.principal,
        authStyle: r.authStyle,
        authMessage: useMsg ? r.auth : null,
        messages,
      };
    });
}

export function openpiCaseArb(ctx: SchemaCtx): fc.Arbitrary<WsCase> {
  const q = (name: string, known: JV[], percent: number) =>
    sometimes(
      fc
        .oneof({ arbitrary: fc.constantFrom(...known), weight: 5 }, { arbitrary: hostileString, weight: 1 })
        .map((v) => `${name}=${encodeAny(String(v))}`),
      percent,
    );
  const imageAny = fc.oneof(
    { arbitrary: fc.constant(validNdarray), weight: 3 },
    { arbitrary: msgpackNdarray, weight: 3 },
    { arbitrary: imageBytes(ctx.images).map((b) => new Bin(b)), weight: 3 },
    { arbitrary: msgpackOddity, weight: 1 },
    { arbitrary: anyJson, weight: 1 },
  );
  const observation = fc
    .record({
      key: fc.constantFrom(
        "observation/image",
        "observation/exterior_image_1_left",
        "image",
        "observation.image",
        "images",
        "wrist_image",
        "x",
      ),
      image: imageAny,
      prompt: fc.oneof(
        { arbitrary: fc.constant<JV>("pick up the red block"), weight: 4 },
        { arbitrary: hostileString, weight: 2 },
        { arbitrary: fc.constant<JV>(new Bin(Buffer.from([0xff, 0xfe]))), weight: 1 },
        { arbitrary: anyJson, weight: 1 },
      ),
      state: fc.oneof(msgpackNdarray, anyJson),
      noPrompt: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))),
    })
    .map((r) => {
      const image = r.key === "images" ? obj({ cam_high: r.image }) : r.image;
      const entries: [string, JV][] = [
        [r.key, image],
        ["observation/state", r.state],
      ];
      if (!r.noPrompt) entries.push(["prompt", r.prompt]);
      return asMsgpackMsg(new Obj(entries));
    });
  const msg = fc.oneof(
    { arbitrary: observation, weight: 6 },
    {
      arbitrary: fc
        .oneof(fc.constantFrom<JV>("episode_start", "episode_end", "reset"), anyJson)
        .map((c) => asMsgpackMsg(new Obj([["__ctrl__", c]]))),
      weight: 1,
    },
    { arbitrary: anyJson.map(asMsgpackMsg), weight: 1 },
    {
      arbitrary: msgpackOddity.map((o) =>
        asMsgpackMsg(
          new Obj([
            ["image", o],
            ["prompt", "a"],
          ]),
        ),
      ),
      weight: 1,
    },
    { arbitrary: anyJson.map(asJsonMsg), weight: 1 },
    { arbitrary: rawGarbage, weight: 1 },
  );
  return fc
    .record({
      principal: fc.constantFrom<PrincipalKind>(
        "apiKey",
        "apiKey",
        "apiKey",
        "apiKey",
        "apiKey",
        "session",
        "none",
        "junk",
      ),
      authStyle: fc.nat(3),
      query: fc.tuple(
        q("model", ["mock-openvla-7b", "demo-vla-tiny"], 50),
        q("unnorm_key", ["bridge_orig"], 85),
        q("robot_id", ["arm-1"], 50),
        sometimes(fc.constantFrom("robot_id=%00", "model=%zz", "robot_id=a&robot_id=b", "unnorm_key="), 10),
      ),
      messages: fc.array(msg, { minLength: 1, maxLength: 3 }),
    })
    .map((r) => {
      const qs = r.query.filter((x): x is string => x !== null);
      return {
        kind: "ws" as const,
        target: "WS /v1/openpi" as const,
        path: `/v1/openpi${qs.length === 0 ? "" : `?${qs.join("&")}`}`,
        principal: r.principal,
        authStyle: r.authStyle,
        authMessage: null,
        messages: r.messages,
      };
    });
}

/** For reports: a case as short text (bodies cut, bytes as hex). */
export function describeCase(c: FuzzCase, max = 600): string {
  const cut = (s: string) => (s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s);
  if (c.kind === "http") {
    const body = c.body === undefined ? "" : ` body=${JSON.stringify(cut(c.body.toString("latin1")))}`;
    return `${c.method} ${JSON.stringify(cut(c.url))} as ${c.principal} headers=${JSON.stringify(c.headers)}${body}`;
  }
  const msgs = c.messages.map((m) =>
    m.binary ? `bin:${cut(m.data.toString("hex"))}` : `text:${JSON.stringify(cut(m.data.toString("utf8")))}`,
  );
  return `${c.target} ${JSON.stringify(c.path)} as ${c.principal} messages=[${msgs.join(", ")}]`;
}
