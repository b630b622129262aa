import { AppError, type FieldError } from "../../platform/errors.ts";

/**
 * PostgreSQL `text` cannot hold U+0000: one such character in a logged instruction, robot id or
 * model fails the whole batched INSERT of inference logs. Decoded stream and openpi messages are
 * therefore scanned (member names and string values, at any depth) and refused with
 * `invalid_character` before anything is used or logged. Lone surrogates need no refusal: they
 * are stored as U+FFFD (pg encodes them so; for PGlite, platform/db/well-formed-params.ts).
 */

/** Reported problems per message: enough to fix it, never an amplified reply. */
const MAX_REPORTED = 10;
/** Pointers into client-chosen member names are cut to this many characters. */
const MAX_PATH_CHARS = 200;

export interface TextProblem {
  readonly path: string;
  readonly message: string;
}

const token = (k: string) => k.replaceAll("~", "~0").replaceAll("/", "~1");

function pointer(path: string): string {
  return path.length <= MAX_PATH_CHARS ? path : `${path.slice(0, MAX_PATH_CHARS)}...`;
}

const NUL_IN_VALUE = "contains U+0000 (NUL)";
const NUL_IN_NAME = "has a member name containing U+0000 (NUL)";

const isContainer = (v: unknown): v is object => v !== null && typeof v === "object" && !ArrayBuffer.isView(v);

/**
 * Where `value` (a decoded JSON or msgpack document) holds U+0000: a JSON Pointer per string
 * value containing it, or to the object whose member name contains it (the name itself is not
 * repeated). Binary values (typed arrays, msgpack bin) are not text and are skipped. Iterative,
 * so a deeply nested document cannot exhaust the stack; strings are checked in place and only
 * containers are queued, and pointers stop growing once they would be cut anyway, so the scan
 * costs a fraction of the decode. At most MAX_REPORTED problems.
 */
export function nulProblems(value: unknown, root = ""): TextProblem[] {
  const problems: TextProblem[] = [];
  const report = (path: string, message: string) => {
    if (problems.length < MAX_REPORTED) problems.push({ path: pointer(path), message });
  };
  const child = (path: string, k: string | number) =>
    path.length > MAX_PATH_CHARS ? path : `${path}/${typeof k === "string" ? token(k) : k}`;
  if (typeof value === "string") {
    if (value.includes("\u0000")) report(root, NUL_IN_VALUE);
    return problems;
  }
  const stack: [object, string][] = isContainer(value) ? [[value, root]] : [];
  while (stack.length > 0 && problems.length < MAX_REPORTED) {
    const [v, path] = stack.pop() as [object, string];
    const nested: [object, string][] = [];
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x === "string") {
          if (x.includes("\u0000")) report(child(path, i), NUL_IN_VALUE);
        } else if (isContainer(x)) nested.push([x, child(path, i)]);
      }
    } else {
      let badName = false;
      for (const k of Object.keys(v)) {
        if (k.includes("\u0000")) {
          badName = true;
          continue;
        }
        const x: unknown = (v as Record<string, unknown>)[k];
        if (typeof x === "string") {
          if (x.includes("\u0000")) report(child(path, k), NUL_IN_VALUE);
        } else if (isContainer(x)) nested.push([x, child(path, k)]);
      }
      if (badName) report(path, NUL_IN_NAME);
    }
    for (let i = nested.length - 1; i >= 0; i--) stack.push(nested[i] as [object, string]);
  }
  return problems;
}

/** The `invalid_character` error (400) for problems found in `what` (e.g. "The start message"). */
export function invalidCharacter(
  problems: readonly TextProblem[],
  what: string,
  where: FieldError["in"] = "body",
): AppError {
  const paths = problems.map((p) => (p.path === "" ? "the top level" : p.path)).join(", ");
  return new AppError("invalid_character", {
    detail: `${what} contains U+0000 (NUL) at ${paths}; text must not contain NUL characters.`,
    errors: problems.map((p) => ({ in: where, path: p.path, message: p.message })),
  });
}
