import {
  errorCodes,
  type FastifyInstance,
  type FastifyRequest,
  type onRequestHookHandler,
  type preHandlerHookHandler,
  type preParsingHookHandler,
  type preValidationHookHandler,
  type RouteOptions,
} from "fastify";
import { isStorableInstant } from "../db/instants.ts";
import { type AppError, errors, type FieldError } from "../errors.ts";

/**
 * Checks every request makes before a route sees its input, so no route has to repeat them:
 * no U+0000 in any text (PostgreSQL `text` and `jsonb` cannot hold it), only the media types a
 * route accepts, finite numbers and storable date-times. Each check is cheap on the common path:
 * the walks for U+0000 run only when the raw input can hold one at all.
 */

const NUL = "\u0000";
const FORM = "application/x-www-form-urlencoded";
const MULTIPART = "multipart/form-data";

function pointerSegment(key: string): string {
  return key.replaceAll("~", "~0").replaceAll("/", "~1");
}

/**
 * JSON Pointer of the first string or key holding U+0000 in a parsed value ("" for the value
 * itself), or undefined. Iterative, so a deeply nested document cannot overflow the stack;
 * buffers (uploaded files) are not text and are skipped.
 */
export function findNul(value: unknown): string | undefined {
  const stack: [unknown, string][] = [[value, ""]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [v, at] = next;
    if (typeof v === "string") {
      if (v.includes(NUL)) return at;
      continue;
    }
    if (v === null || typeof v !== "object" || ArrayBuffer.isView(v)) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}/${i}`]);
      continue;
    }
    const keys = Object.keys(v);
    for (const k of keys) if (k.includes(NUL)) return `${at}/${pointerSegment(k)}`;
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i] as string;
      stack.push([(v as Record<string, unknown>)[k], `${at}/${pointerSegment(k)}`]);
    }
  }
  return undefined;
}

/** Throws invalid_character when `value` holds U+0000; `prefix` is the pointer of `value` itself. */
export function refuseNul(value: unknown, part: FieldError["in"], prefix = ""): void {
  const at = findNul(value);
  if (at !== undefined) throw errors.invalidCharacter(part, `${prefix}${at}` || "/");
}

/**
 * Whether JSON text can hold U+0000 at all: a raw control character is not valid JSON, so only
 * the escape `\u0000` spells it (hex digits of 0 have no case). An escaped backslash followed
 * by `u0000` also matches; the walk then finds nothing.
 */
export function jsonMayHoldNul(text: string): boolean {
  return text.includes("\\u0000");
}

/**
 * Parses JSON text with Fastify's own parser, so `__proto__` and `constructor.prototype` keys
 * are refused as in request bodies; undefined when the text is not acceptable JSON.
 */
export function secureJsonParser(app: FastifyInstance): (text: string) => { value: unknown } | undefined {
  const parse = app.getDefaultJsonParser("error", "error");
  return (text) => {
    let out: { value: unknown } | undefined;
    // The default parser ignores the request and calls back synchronously.
    parse(undefined as unknown as FastifyRequest, text, (err, value) => {
      out = err === null ? { value } : undefined;
    });
    return out;
  };
}

/** How deep `prototypePoisoned` walks; a document nested deeper goes to secure-json-parse. */
export const POISON_WALK_DEPTH = 32;

/**
 * Whether a parsed JSON value holds what secure-json-parse refuses: an own `__proto__` key
 * (JSON.parse creates it as a plain own property), or a `constructor` key whose value is an
 * object with a `prototype` key. Undefined when the value is nested deeper than `maxDepth`
 * (the caller then decides another way). Iterative; strings are leaves, so the cost follows the
 * number of objects and array slots, not the text's length.
 */
export function prototypePoisoned(value: unknown, maxDepth = POISON_WALK_DEPTH): boolean | undefined {
  if (value === null || typeof value !== "object") return false;
  const nodes: object[] = [value];
  const depths: number[] = [0];
  for (let node = nodes.pop(); node !== undefined; node = nodes.pop()) {
    const depth = depths.pop() as number;
    let children: unknown[];
    if (Array.isArray(node)) {
      children = node;
    } else {
      if (Object.hasOwn(node, "__proto__")) return true;
      if (Object.hasOwn(node, "constructor")) {
        const c = (node as { constructor: unknown }).constructor;
        if (c !== null && typeof c === "object" && Object.hasOwn(c, "prototype")) return true;
      }
      children = Object.values(node);
    }
    for (const child of children) {
      if (child === null || typeof child !== "object") continue;
      if (depth >= maxDepth) return undefined;
      nodes.push(child);
      depths.push(depth + 1);
    }
  }
  return false;
}

/**
 * Parses JSON text once and refuses the same documents as `secureJsonParser` (`__proto__` and
 * `constructor.prototype` keys, a leading BOM skipped), but checks the parsed object's keys
 * instead of scanning the whole text twice with secure-json-parse's regular expressions: for a
 * 200 KB `/act` body that is almost all one base64 string, the walk visits a handful of objects.
 * A document nested deeper than `POISON_WALK_DEPTH` is parsed again by secure-json-parse.
 */
export function keyCheckedJsonParser(app: FastifyInstance): (text: string) => { value: unknown } | undefined {
  const secure = secureJsonParser(app);
  return (text) => {
    let value: unknown;
    // A refused body costs no stack trace (as in secure-json-parse).
    const { stackTraceLimit } = Error;
    Error.stackTraceLimit = 0;
    try {
      value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch {
      return undefined;
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    const poisoned = prototypePoisoned(value);
    if (poisoned === undefined) return secure(text);
    return poisoned ? undefined : { value };
  };
}

/** A parsed JSON body holding U+0000 -> invalid_character naming the first place; else undefined. */
function nulInBody(text: string, value: unknown): AppError | undefined {
  const at = jsonMayHoldNul(text) ? findNul(value) : undefined;
  return at === undefined ? undefined : errors.invalidCharacter("body", at || "/");
}

/**
 * Replaces the JSON body parser of `app`'s encapsulation context (call inside a route plugin,
 * e.g. `/act`) with `keyCheckedJsonParser`: the same answers for empty, malformed, poisoned and
 * NUL-holding bodies as the app-wide parser of `installEdgeGuards`, less CPU for large bodies.
 */
export function installKeyCheckedJsonParser(app: FastifyInstance): void {
  const parse = keyCheckedJsonParser(app);
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = body as string;
    if (text.length === 0) {
      done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
      return;
    }
    const parsed = parse(text);
    if (parsed === undefined) {
      done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
      return;
    }
    const nul = nulInBody(text, parsed.value);
    if (nul === undefined) done(null, parsed.value);
    else done(nul, undefined);
  });
}

type FormatValidator = ((s: string) => boolean) | RegExp | { validate: ((s: string) => boolean) | RegExp };

interface AjvLike {
  readonly formats: Record<string, unknown>;
  addFormat(name: string, format: { type: "string"; validate: (s: string) => boolean }): unknown;
}

function asTest(f: FormatValidator | undefined): (s: string) => boolean {
  if (f === undefined) return () => true;
  if (f instanceof RegExp) return (s) => f.test(s);
  if (typeof f === "function") return f;
  return asTest(f.validate);
}

/**
 * Narrows ajv-formats' `date-time` (RFC 3339 syntax) to instants the service can store and
 * print: `0000-01-01T00:00:00Z` is valid RFC 3339 but no PostgreSQL timestamp, and a leap
 * second (`23:59:60Z`) is no JS Date. Pass as the ajv compiler's `onCreate`.
 */
export function storableDateTimeFormat(ajv: AjvLike): void {
  const syntax = asTest(ajv.formats["date-time"] as FormatValidator | undefined);
  ajv.addFormat("date-time", { type: "string", validate: (s) => syntax(s) && isStorableInstant(Date.parse(s)) });
}

function essence(contentType: string): string {
  return (contentType.split(";")[0] ?? "").trim().toLowerCase();
}

function hasBody(request: FastifyRequest): boolean {
  const h = request.headers;
  return h["transfer-encoding"] !== undefined || (h["content-length"] !== undefined && h["content-length"] !== "0");
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * The media types a route takes: `consumes`, the keys of a per-type body schema, or JSON. A
 * route without a body schema ignores a body, but one it could not parse still gets the 415.
 */
function acceptedTypes(route: RouteOptions): readonly string[] | undefined {
  const s = route.schema as { consumes?: unknown; body?: unknown } | undefined;
  if (Array.isArray(s?.consumes)) return s.consumes.map((t) => String(t).toLowerCase());
  if (s?.body === undefined || s.body === null) {
    return listOf(route.method).some((m) => BODY_METHODS.has(m)) ? ["application/json"] : undefined;
  }
  const content = (s.body as { content?: unknown }).content;
  if (content !== null && typeof content === "object") return Object.keys(content).map((t) => t.toLowerCase());
  return ["application/json"];
}

function mediaTypeCheck(accepted: readonly string[]): preParsingHookHandler {
  return (request, _reply, payload, done) => {
    const raw = request.headers["content-type"];
    if (!hasBody(request) && (raw === undefined || request.routeOptions.schema?.body === undefined)) {
      done(null, payload);
      return;
    }
    const type = raw === undefined ? "" : essence(raw);
    if (!accepted.includes(type)) {
      done(errors.unsupportedMediaType(raw, accepted));
      return;
    }
    if (type === MULTIPART && !/;\s*boundary=/i.test(raw ?? "")) {
      done(
        errors.badRequest(
          "multipart/form-data needs a boundary parameter (Content-Type: multipart/form-data; boundary=...).",
        ),
      );
      return;
    }
    done(null, payload);
  };
}

/** Form fields are decoded text: `%00` becomes U+0000. Forms are small (sign-in), so walk them. */
const formNulCheck: preValidationHookHandler = (request, _reply, done) => {
  const raw = request.headers["content-type"];
  if (raw !== undefined && essence(raw) === FORM) {
    const at = findNul(request.body);
    if (at !== undefined) {
      done(errors.invalidCharacter("body", at || "/"));
      return;
    }
  }
  done();
};

function listOf<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** `%00` in the URL decodes to U+0000 in a path parameter or a query name or value. */
const urlNulCheck: onRequestHookHandler = (request, _reply, done) => {
  if (!request.url.includes("%00")) {
    done();
    return;
  }
  const inParams = findNul(request.params);
  if (inParams !== undefined) {
    done(errors.invalidCharacter("params", inParams || "/"));
    return;
  }
  const inQuery = findNul(request.query);
  done(inQuery === undefined ? undefined : errors.invalidCharacter("query", inQuery || "/"));
};

function nonFinite(values: unknown, part: FieldError["in"]): AppError | undefined {
  if (values === null || typeof values !== "object") return undefined;
  for (const [k, v] of Object.entries(values)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (typeof x === "number" && !Number.isFinite(x)) {
        return errors.invalidRequest([{ in: part, path: `/${pointerSegment(k)}`, message: "must be a finite number" }]);
      }
    }
  }
  return undefined;
}

/**
 * Query and path values are coerced from text, and "1e309" or "Infinity" coerce to Infinity,
 * which ajv's range keywords then skip (strictNumbers). Refuse any non-finite number there.
 */
const finiteNumbers: preHandlerHookHandler = (request, _reply, done) => {
  done(nonFinite(request.query, "query") ?? nonFinite(request.params, "params"));
};

/** Installs the JSON parser, hooks and per-route checks; call before registering any route. */
export function installEdgeGuards(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    parse(request, body as string, (err, value) => {
      if (err !== null) {
        done(err, undefined);
        return;
      }
      const nul = nulInBody(body as string, value);
      if (nul === undefined) done(null, value);
      else done(nul, undefined);
    });
  });

  app.addHook("onRequest", urlNulCheck);
  app.addHook("preHandler", finiteNumbers);
  app.addHook("onRoute", (route) => {
    const accepted = acceptedTypes(route);
    if (accepted === undefined) return;
    route.preParsing = [mediaTypeCheck(accepted), ...listOf(route.preParsing)];
    if (accepted.includes(FORM)) route.preValidation = [formNulCheck, ...listOf(route.preValidation)];
  });
}
