import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { errors } from "../../platform/errors.ts";
import {
  installKeyCheckedJsonParser,
  jsonMayHoldNul,
  keyCheckedJsonParser,
  refuseNul,
} from "../../platform/http/edge-guards.ts";
import { SEVERITIES, type Severity } from "../safety/profile.ts";
import type { SafetyResult } from "../safety/types.ts";
import type { InferenceRouteOptions } from "./inference.routes.ts";
import { ROBOT_ID_PATTERN } from "./inference.schemas.ts";
import {
  callContext,
  failureInfoOf,
  imageInput,
  markLogged,
  recordRouteFailure,
  serverTiming,
} from "./inference-http.ts";
import { encodeJsonNumpy } from "./json-numpy.ts";

/** Header values must be Latin-1 without control characters; keep the detail short and plain. */
function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 300);
}

/**
 * `X-Safety-Violations`: each rule that fired with its highest severity, `rule:severity` joined by
 * ", " (empty when none), in the order the rules first fired.
 */
export function violationList(safety: Pick<SafetyResult, "violations">): string {
  const worst = new Map<string, Severity>();
  for (const v of safety.violations) {
    const seen = worst.get(v.type);
    if (seen === undefined || SEVERITIES.indexOf(v.severity) > SEVERITIES.indexOf(seen)) worst.set(v.type, v.severity);
  }
  return [...worst].map(([rule, severity]) => `${rule}:${severity}`).join(", ");
}

interface ActDocument {
  image: unknown;
  instruction: unknown;
  unnorm_key?: unknown;
}

const ROBOT_ID = new RegExp(ROBOT_ID_PATTERN);

/** `X-Robot-Id`: optional; names the robot for its safety profile, stops and history. */
function robotIdOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined || !ROBOT_ID.test(v)) {
    throw errors.invalidRequest([
      {
        in: "headers",
        path: "/x-robot-id",
        message: "must be 1..128 of letters, digits and ._:/- (starting alphanumeric)",
      },
    ]);
  }
  return v;
}

type JsonParser = ReturnType<typeof keyCheckedJsonParser>;

/**
 * The deploy.py body, or the `{"encoded": "<JSON text of it>"}` variant. The inner document gets
 * the outer body's rules: no `__proto__` / `constructor.prototype` keys, no U+0000.
 */
function readBody(body: unknown, parseJson: JsonParser): { doc: ActDocument; encoded: boolean } {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw errors.validation([{ in: "body", path: "/", message: "must be a JSON object" }]);
  }
  const b = body as Record<string, unknown>;
  if (typeof b.encoded === "string") {
    const parsed = parseJson(b.encoded);
    if (parsed === undefined) {
      throw errors.invalidJson(
        '"encoded" does not hold valid JSON (or holds a __proto__ or constructor.prototype key).',
      );
    }
    const inner = parsed.value;
    if (jsonMayHoldNul(b.encoded)) refuseNul(inner, "body", "/encoded");
    if (inner === null || typeof inner !== "object" || Array.isArray(inner)) {
      throw errors.validation([{ in: "body", path: "/encoded", message: "must hold a JSON object" }]);
    }
    return { doc: inner as ActDocument, encoded: true };
  }
  return { doc: b as unknown as ActDocument, encoded: false };
}

function checkDoc(doc: ActDocument): { instruction: string; unnormKey: string | undefined } {
  const problems: { in: "body"; path: string; message: string }[] = [];
  if (doc.image === undefined) problems.push({ in: "body", path: "/image", message: "is required" });
  if (typeof doc.instruction !== "string" || doc.instruction.length < 1 || doc.instruction.length > 1000) {
    problems.push({ in: "body", path: "/instruction", message: "must be a string of 1..1000 characters" });
  }
  if (doc.unnorm_key !== undefined && doc.unnorm_key !== null && typeof doc.unnorm_key !== "string") {
    problems.push({ in: "body", path: "/unnorm_key", message: "must be a string" });
  }
  if (problems.length > 0) throw errors.validation(problems);
  return {
    instruction: doc.instruction as string,
    unnormKey: typeof doc.unnorm_key === "string" ? doc.unnorm_key : undefined,
  };
}

/** `VLA-Experiment: <id>; variant=<name>` (the name quoted when it is not an RFC 9110 token). */
export function experimentHeader(e: { id: string; variant: string }): string {
  const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(e.variant);
  return `${e.id}; variant=${token ? e.variant : JSON.stringify(e.variant)}`;
}

/**
 * POST /act: OpenVLA's deploy.py protocol, so a robot team's stock client works by adding an
 * API key header. Failures answer the JSON string "error" (what stock clients expect) with the
 * real HTTP status and `X-Problem-Code` / `X-Problem-Detail` headers; see docs/inference.md.
 */
export const actRoutes: FastifyPluginAsyncTypebox<InferenceRouteOptions> = async (app, { platform, runner }) => {
  const requireInference = platform.auth.require({ scopes: ["inference"] });
  const meter = platform.limits.meter();
  // The body (about 200 KB, nearly all one base64 string) and an `encoded` document are parsed
  // once and checked for prototype poisoning by their keys, not by scanning the text.
  installKeyCheckedJsonParser(app);
  const parseJson = keyCheckedJsonParser(app);
  const failureInfo = (body: unknown, robotId: string | undefined) => {
    let info: ReturnType<typeof failureInfoOf>;
    try {
      info = failureInfoOf(readBody(body, parseJson).doc);
    } catch {
      info = failureInfoOf(body);
    }
    return { ...info, robotId };
  };

  app.post(
    "/act",
    {
      onRequest: [requireInference, meter],
      bodyLimit: platform.config.http.inferenceBodyLimitBytes,
      schema: {
        tags: ["inference"],
        summary: "OpenVLA-compatible action endpoint",
        description:
          'OpenVLA `vla-scripts/deploy.py` protocol: `{"image": json_numpy uint8 HxWx3, "instruction": str, "unnorm_key"?: str}` ' +
          '(or `{"encoded": "<that document as JSON text>"}`) -> a json_numpy float64 array of shape [7]. Authenticate with ' +
          "`X-API-Key` (or `Authorization: Bearer`); optional `X-Robot-Id` names the robot for its safety profile, emergency stop " +
          "and history. The returned action is the safe action (see docs/safety.md); what safety did is in the headers " +
          "`X-Safety-Status` (pass, clamped, rejected, emergency_stop, not_evaluated), `X-Safety-Violations` " +
          "(`rule:severity, ...`, empty when none) and `X-Inference-Id` (GET /v1/inference/{id}); when a split " +
          "experiment chose the model, `VLA-Experiment: <id>; variant=<name>` (docs/experiments.md). " +
          'Failures answer the JSON string `"error"` with the HTTP status and ' +
          "`X-Problem-Code`/`X-Problem-Detail` headers. Logged with source `act`.",
        security: [{ apiKeyHeader: [] }, { bearerAuth: [] }],
        body: Type.Object(
          {
            image: Type.Optional(Type.Unknown({ description: "json_numpy uint8 HxWx3 array." })),
            instruction: Type.Optional(Type.String()),
            unnorm_key: Type.Optional(Type.String()),
            encoded: Type.Optional(
              Type.String({ description: "The whole document as JSON text (clients without json_numpy)." }),
            ),
          },
          {
            examples: [
              {
                image: { __numpy__: "<base64 of 224*224*3 bytes>", dtype: "|u1", shape: [224, 224, 3] },
                instruction: "pick up the red block",
                unnorm_key: "bridge_orig",
              },
            ],
          },
        ),
        response: {
          200: Type.Unknown({
            description:
              'json_numpy float64 [7]: `{"__numpy__": base64 of 56 bytes, "dtype": "<f8", "shape": [7]}`; a JSON string holding it for the `encoded` variant.',
            // [0.0012, -0.0031, 0.0071, 0.0005, -0.0075, -0.0017, 0.996] as little-endian float64.
            examples: [
              {
                __numpy__: "YTJVMCqpUz8TYcPTK2Vpv4Za07zjFH0//Knx0k1iQD+4HoXrUbh+v18HzhlR2lu/rBxaZDvf7z8=",
                dtype: "<f8",
                shape: [7],
              },
            ],
          }),
          "4XX": Type.Literal("error", {
            description: 'The JSON string "error"; see X-Problem-Code and X-Problem-Detail.',
          }),
          "5XX": Type.Literal("error", {
            description: 'The JSON string "error"; see X-Problem-Code and X-Problem-Detail.',
          }),
        },
      },
      errorHandler: (error, request, reply) => {
        let robotId: string | undefined;
        try {
          robotId = robotIdOf(request.headers["x-robot-id"]);
        } catch {
          robotId = undefined;
        }
        const appError = recordRouteFailure(runner, request, reply, error, "act", (b) => failureInfo(b, robotId));
        for (const [k, v] of Object.entries(appError.headers)) reply.header(k, v);
        return reply
          .code(appError.status)
          .header("X-Problem-Code", appError.code)
          .header("X-Problem-Detail", headerSafe(appError.detail ?? appError.title))
          .type("application/json")
          .serializer((p: unknown) => String(p))
          .send('"error"');
      },
    },
    async (request, reply) => {
      const robotId = robotIdOf(request.headers["x-robot-id"]);
      const { doc, encoded } = readBody(request.body, parseJson);
      const { instruction, unnormKey } = checkDoc(doc);
      const image = imageInput(doc.image, platform);
      if (image.imageArray === undefined) {
        throw errors.invalidImage("/act takes the image as a json_numpy uint8 HxWx3 array.");
      }
      // The runner logs the outcome, success or failure.
      markLogged(request);
      const { id, result, action, safety, totalMs, experiment } = await runner.run(callContext(request, reply, "act"), {
        instruction,
        unnormKey,
        image,
        robotId,
      });
      reply.header("Server-Timing", serverTiming({ ...result.timing, total_ms: totalMs }));
      // The body stays what the stock client expects; what safety did travels in headers.
      reply.header("X-Safety-Status", safety.status);
      reply.header("X-Safety-Violations", violationList(safety));
      reply.header("X-Inference-Id", id);
      if (experiment !== undefined) reply.header("VLA-Experiment", experimentHeader(experiment));
      const out = JSON.stringify(encodeJsonNumpy(Float64Array.from(action), [action.length]));
      return reply
        .type("application/json")
        .serializer((p: unknown) => String(p))
        .send(encoded ? JSON.stringify(out) : out);
    },
  );
};
