import { Type } from "typebox";

const ComponentSchema = Type.Object({
  status: Type.Union([Type.Literal("ok"), Type.Literal("degraded"), Type.Literal("down"), Type.Literal("disabled")]),
  detail: Type.Optional(Type.String()),
  latency_ms: Type.Number({ description: "How long the check took." }),
});

export const HealthSchema = Type.Object(
  {
    status: Type.Union([Type.Literal("ok"), Type.Literal("degraded"), Type.Literal("down")], {
      description: "ok: all components fine; degraded: serving with a component impaired; down: cannot serve.",
    }),
    version: Type.String(),
    environment: Type.String(),
    uptime_seconds: Type.Number(),
    checks: Type.Record(Type.String(), ComponentSchema, { description: "Per-component results." }),
  },
  {
    examples: [
      {
        status: "ok",
        version: "0.1.0",
        environment: "development",
        uptime_seconds: 12.5,
        checks: {
          database: { status: "ok", detail: "pglite", latency_ms: 0.41 },
          redis: { status: "disabled", detail: "REDIS_URL not set; in-process fallbacks", latency_ms: 0.01 },
        },
      },
    ],
  },
);

export const LiveSchema = Type.Object({ status: Type.Literal("ok") }, { examples: [{ status: "ok" }] });

export const ProblemTypeParams = Type.Object({
  code: Type.String({ pattern: "^[a-z_]{1,64}$", description: "An error code from the catalogue." }),
});

export const ProblemTypeSchema = Type.Object(
  {
    code: Type.String(),
    status: Type.Integer(),
    title: Type.String(),
    documentation: Type.String({ description: "Where the code is explained at length." }),
  },
  {
    examples: [
      {
        code: "validation_failed",
        status: 422,
        title: "Request body failed validation",
        documentation: "docs/errors.md#validation_failed",
      },
    ],
  },
);

export const ProblemTypeListSchema = Type.Array(ProblemTypeSchema);
