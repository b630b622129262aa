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
          email: { status: "ok", detail: "outbox ./data/outbox; 0 queued", latency_ms: 0.02 },
          rate_limiter: { status: "ok", detail: "in-process limiter (no Redis configured)", latency_ms: 0.02 },
          models: {
            status: "ok",
            detail:
              "mock-openvla-7b: ready (mock backend (deterministic, not a policy)); demo-vla-tiny: ready (onnxruntime cpu)",
            latency_ms: 0.05,
          },
          queue: { status: "ok", detail: "mock-openvla-7b: 0/256; demo-vla-tiny: 0/256", latency_ms: 0.02 },
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

export const ProblemTypeListSchema = Type.Array(ProblemTypeSchema, {
  examples: [
    [
      {
        code: "validation_failed",
        status: 422,
        title: "Request body failed validation",
        documentation: "docs/errors.md#validation_failed",
      },
      { code: "quota_exceeded", status: 429, title: "Quota exceeded", documentation: "docs/errors.md#quota_exceeded" },
    ],
  ],
});
