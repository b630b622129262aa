import { Type } from "typebox";
import { type AppError, type ErrorCode, type FieldError, registeredProblemType } from "../errors.ts";

/** RFC 9457 problem document as this API renders it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: ErrorCode | string;
  request_id: string;
  errors?: readonly FieldError[];
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** Where each code's `type` URI points: a route of this service that describes the code. */
export function problemType(baseUrl: string, code: string): string {
  return `${baseUrl}/problems/${code}`;
}

export function renderProblem(err: AppError, baseUrl: string, requestId: string, instance: string): Problem {
  const problem: Problem = {
    type: registeredProblemType(err.code) ?? problemType(baseUrl, err.code),
    title: err.title,
    status: err.status,
    code: err.code,
    request_id: requestId,
    instance,
  };
  if (err.detail !== undefined) problem.detail = err.detail;
  if (err.errors !== undefined && err.errors.length > 0) problem.errors = err.errors;
  for (const [k, v] of Object.entries(err.extensions)) {
    if (!(k in problem)) problem[k] = v;
  }
  return problem;
}

/** OpenAPI/response schema of a problem document; extensions are allowed. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: "URI identifying the problem type; dereferences to its description." }),
    title: Type.String({ description: "Short summary of the problem type." }),
    status: Type.Integer({ description: "HTTP status code." }),
    detail: Type.Optional(Type.String({ description: "Explanation of this occurrence." })),
    instance: Type.Optional(Type.String({ description: "The request path." })),
    code: Type.String({ description: "Stable machine-readable error code (see docs/errors.md)." }),
    request_id: Type.String({ description: "Echoes X-Request-Id; quote it when asking for support." }),
    errors: Type.Optional(
      Type.Array(
        Type.Object({
          in: Type.String({ description: "Part of the request: body, query, params or headers." }),
          path: Type.String({ description: "JSON Pointer to the offending field." }),
          message: Type.String(),
        }),
        { description: "Field-level validation failures." },
      ),
    ),
  },
  {
    $id: "Problem",
    additionalProperties: true,
    description: "RFC 9457 problem details.",
    examples: [
      {
        type: "http://localhost:8000/problems/validation_failed",
        title: "Request body failed validation",
        status: 422,
        detail: "The request body failed validation.",
        instance: "/auth/register",
        code: "validation_failed",
        request_id: "3f1c2a4e-8d7b-4c1e-9a0f-2b6d5e7c8a91",
        errors: [{ in: "body", path: "/email", message: 'must match format "email"' }],
      },
    ],
  },
);
