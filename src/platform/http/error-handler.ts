import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError, errors, type FieldError, isAppError } from "../errors.ts";
import { PROBLEM_CONTENT_TYPE, renderProblem } from "./problem.ts";

interface AjvIssue {
  instancePath?: string;
  schemaPath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

const CONTEXT_TO_PART: Record<string, FieldError["in"]> = {
  body: "body",
  querystring: "query",
  params: "params",
  headers: "headers",
};

function allowedValues(i: AjvIssue): unknown[] {
  const params = i.params ?? {};
  if (i.keyword === "const") return [params.allowedValue];
  if (i.keyword === "enum" && Array.isArray(params.allowedValues)) return params.allowedValues;
  return [];
}

function mustBeOneOf(values: readonly unknown[]): string {
  const shown = [...new Set(values)].map((v) => (typeof v === "string" ? v : JSON.stringify(v)));
  return shown.length === 1 ? `must be ${shown[0]}` : `must be one of: ${shown.join(", ")}`;
}

/**
 * ajv reports a union of literals (TypeBox `Union([Literal, ...])`: anyOf of const) as one
 * "must be equal to constant" per branch plus "must match a schema in anyOf". Collapse those into
 * one issue per field that lists the allowed values; a lone const or enum lists its values too.
 */
function collapseChoices(issues: readonly AjvIssue[]): AjvIssue[] {
  const dropped = new Set<AjvIssue>();
  const replaced = new Map<AjvIssue, AjvIssue>();
  for (const a of issues) {
    if (a.keyword !== "anyOf" || a.schemaPath === undefined) continue;
    const prefix = `${a.schemaPath}/`;
    const branches = issues.filter(
      (i) => i !== a && i.instancePath === a.instancePath && i.schemaPath?.startsWith(prefix) === true,
    );
    const values = branches.flatMap(allowedValues);
    const onlyChoices = branches.every((b) => b.keyword === "const" || b.keyword === "enum" || b.keyword === "type");
    if (values.length === 0 || !onlyChoices) continue;
    for (const b of branches) dropped.add(b);
    replaced.set(a, { ...a, message: mustBeOneOf(values) });
  }
  return issues
    .filter((i) => !dropped.has(i))
    .map((i) => {
      const r = replaced.get(i);
      if (r !== undefined) return r;
      if (i.keyword === "const" || i.keyword === "enum") return { ...i, message: mustBeOneOf(allowedValues(i)) };
      return i;
    });
}

function fieldErrors(issues: readonly AjvIssue[], part: FieldError["in"]): FieldError[] {
  return collapseChoices(issues.slice(0, 200))
    .slice(0, 50)
    .map((i) => {
      let p = i.instancePath ?? "";
      const params = i.params ?? {};
      if (i.keyword === "required" && typeof params.missingProperty === "string") {
        p = `${p}/${params.missingProperty}`;
      } else if (i.keyword === "additionalProperties" && typeof params.additionalProperty === "string") {
        p = `${p}/${params.additionalProperty}`;
      }
      return { in: part, path: p === "" ? "/" : p, message: i.message ?? "is invalid" };
    });
}

/** Maps anything thrown inside Fastify onto the catalogue. Unknown errors become internal_error. */
export function toAppError(error: FastifyError | Error, bodyLimit: number): AppError {
  if (isAppError(error)) return error;
  const fe = error as FastifyError & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(fe.validation)) {
    const part = CONTEXT_TO_PART[fe.validationContext ?? "body"] ?? "body";
    const list = fieldErrors(fe.validation, part);
    return part === "body" ? errors.validation(list) : errors.invalidRequest(list);
  }
  switch (fe.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return errors.invalidJson();
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return errors.invalidJson("The request declares a JSON body but sends none.");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return errors.payloadTooLarge(bodyLimit);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new AppError("unsupported_media_type", { detail: fe.message });
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return errors.badRequest("Content-Length does not match the body.");
    case "FST_ERR_BAD_URL":
      return errors.badRequest("The URL is malformed.");
    default:
      break;
  }
  if (error instanceof SyntaxError && fe.statusCode === 400) return errors.invalidJson();
  const status = fe.statusCode ?? 500;
  if (status === 413) return errors.payloadTooLarge(bodyLimit);
  if (status === 415) return new AppError("unsupported_media_type", { detail: fe.message });
  if (status >= 400 && status < 500) return errors.badRequest(fe.message);
  return errors.internal(error);
}

export function sendProblem(
  reply: FastifyReply,
  request: FastifyRequest,
  err: AppError,
  baseUrl: string,
): FastifyReply {
  const problem = renderProblem(err, baseUrl, String(request.id), request.url.split("?")[0] ?? "/");
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  return reply
    .code(err.status)
    .type(PROBLEM_CONTENT_TYPE)
    .serializer((payload: unknown) => JSON.stringify(payload))
    .send(problem);
}

export function installErrorHandler(app: FastifyInstance, baseUrl: string): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 0;
    const appError = toAppError(error, limit);
    if (appError.status >= 500) {
      // The cause (stack, driver message) goes to the log, never to the client.
      request.log.error({ err: error, code: appError.code }, "request failed");
    } else {
      request.log.info({ code: appError.code, status: appError.status }, appError.detail ?? appError.title);
    }
    return sendProblem(reply, request, appError, baseUrl);
  });
}
