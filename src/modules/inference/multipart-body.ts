import type { FastifyRequest } from "fastify";
import { errors, isAppError } from "../../platform/errors.ts";
import { refuseNul } from "../../platform/http/edge-guards.ts";

/** The limits @fastify/multipart is registered with, to name the one a request hit. */
export interface MultipartLimits {
  readonly fileSize: number;
  readonly files: number;
  readonly fields: number;
  readonly parts: number;
}

/**
 * Maps what reading a multipart body can throw onto the catalogue. The plugin's own errors
 * carry codes; busboy's (a truncated body, a missing closing boundary, a garbled part header)
 * are plain Errors, and all of them are the client's malformed body, never a 500.
 */
function multipartError(err: unknown, limits: MultipartLimits): Error {
  if (isAppError(err)) return err;
  switch ((err as { code?: unknown }).code) {
    case "FST_REQ_FILE_TOO_LARGE":
      return errors.partTooLarge(
        `The file part exceeds the limit of ${limits.fileSize} bytes per uploaded file (INFERENCE_UPLOAD_MAX_BYTES).`,
      );
    case "FST_PARTS_LIMIT":
      return errors.partTooLarge(`The multipart body has more than ${limits.parts} parts.`);
    case "FST_FILES_LIMIT":
      return errors.partTooLarge(`The multipart body has more than ${limits.files} file part (the image).`);
    case "FST_FIELDS_LIMIT":
      return errors.partTooLarge(`The multipart body has more than ${limits.fields} fields.`);
    case "FST_INVALID_JSON_FIELD_ERROR":
      return errors.badRequest("A multipart field declared as application/json does not hold valid JSON.");
    case "FST_PROTO_VIOLATION":
      return errors.badRequest("A multipart field may not be named after an Object prototype property.");
    default:
      break;
  }
  const message = err instanceof Error ? err.message : String(err);
  return errors.badRequest(`The multipart body is malformed or truncated (${message}).`);
}

/**
 * Reads a multipart body into `{ field: string, image: Buffer }` (a repeated name gives a list),
 * what the plugin's `attachFieldsToBody: "keyValues"` does, but with its failures answered as
 * 400/413 problems instead of escaping as 500s, and no U+0000 in any field name or value.
 */
export async function readMultipartBody(
  request: FastifyRequest,
  limits: MultipartLimits,
): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = {};
  try {
    for await (const part of request.parts()) {
      const value = part.type === "file" ? await part.toBuffer() : part.value;
      const prev = body[part.fieldname];
      body[part.fieldname] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
  } catch (err) {
    throw multipartError(err, limits);
  }
  refuseNul(body, "body");
  return body;
}
