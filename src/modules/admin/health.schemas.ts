import { Type } from "typebox";

/** Wire schema of `GET /admin/monitoring/health`. */

const Ms = Type.Union([Type.Number(), Type.Null()]);
const Str = Type.Union([Type.String(), Type.Null()]);
const Time = Type.Union([Type.String({ format: "date-time" }), Type.Null()]);

const Component = Type.Object({
  status: Type.Union([Type.Literal("ok"), Type.Literal("degraded"), Type.Literal("down"), Type.Literal("disabled")]),
  detail: Type.Optional(Type.String()),
  latency_ms: Type.Number(),
});

export const DeepHealthSchema = Type.Object(
  {
    status: Type.Union([Type.Literal("ok"), Type.Literal("degraded"), Type.Literal("down")], {
      description:
        "`/health`'s status, lowered to degraded when an inference_logs partition ahead is missing or a job's " +
        "last run failed. 503 when down.",
    }),
    checked_at: Type.String({ format: "date-time" }),
    checks: Type.Record(Type.String(), Component, { description: "The `/health` checks, run the same way." }),
    database: Type.Object({
      kind: Type.String({ description: "pglite (embedded) or postgres." }),
      status: Type.String(),
      round_trip_ms: Type.Union([Ms], { description: "A `select 1` round trip; null when it failed." }),
      error: Str,
      pool: Type.Union(
        [
          Type.Object({ max: Type.Integer(), total: Type.Integer(), idle: Type.Integer(), waiting: Type.Integer() }),
          Type.Null(),
        ],
        { description: "The PostgreSQL pool; null on embedded PGlite (one connection)." },
      ),
      partitions: Type.Object(
        {
          expected: Type.Array(Type.String(), { description: "The current month's and the next two." }),
          missing: Type.Array(Type.String()),
          default_present: Type.Boolean(),
        },
        { description: "inference_logs monthly partitions created ahead." },
      ),
    }),
    redis: Type.Object({
      status: Type.String({ description: "ok, down or disabled (REDIS_URL not set)." }),
      round_trip_ms: Ms,
      error: Str,
    }),
    models: Type.Array(
      Type.Object({
        id: Type.String(),
        backend: Type.String(),
        status: Type.String(),
        detail: Str,
        check_ms: Type.Number({ description: "How long the backend's health check took." }),
        queue_depth: Type.Integer(),
        max_queue: Type.Integer(),
        latency_ms: Type.Object(
          { p50: Ms, p95: Ms, p99: Ms },
          { description: "Recent requests of this instance (in-process window)." },
        ),
        endpoints: Type.Array(
          Type.Object({
            url: Type.String(),
            circuit: Type.Union([Type.Literal("closed"), Type.Literal("open"), Type.Literal("half_open")]),
            probe_ok: Type.Boolean(),
            consecutive_failures: Type.Integer(),
            outstanding: Type.Integer(),
            last_error: Str,
          }),
          { description: "Remote backends' endpoints; empty for local ones." },
        ),
      }),
    ),
    batch_writers: Type.Array(
      Type.Object({
        writer: Type.String(),
        buffered: Type.Number(),
        written: Type.Number(),
        spilled: Type.Number(),
        replayed: Type.Number(),
        dropped: Type.Number({ description: "Must stay 0." }),
        dead_lettered: Type.Number(),
      }),
      { description: "Since this instance started." },
    ),
    jobs: Type.Array(
      Type.Object({
        name: Type.String(),
        interval_ms: Type.Integer(),
        last_run_at: Time,
        last_duration_ms: Ms,
        last_outcome: Type.Union([Type.Literal("ok"), Type.Literal("failed"), Type.Null()]),
        last_error: Str,
        last_error_at: Time,
        next_run_at: Type.String({ format: "date-time" }),
        running: Type.Boolean(),
        runs: Type.Integer(),
        failures: Type.Integer(),
      }),
      { description: "Background jobs of this instance (platform/jobs.ts)." },
    ),
  },
  {
    examples: [
      {
        status: "ok",
        checked_at: "2026-12-05T14:00:00.000Z",
        checks: { database: { status: "ok", detail: "postgres", latency_ms: 1.2 } },
        database: {
          kind: "postgres",
          status: "ok",
          round_trip_ms: 0.9,
          error: null,
          pool: { max: 30, total: 6, idle: 5, waiting: 0 },
          partitions: {
            expected: ["inference_logs_2026_12", "inference_logs_2027_01", "inference_logs_2027_02"],
            missing: [],
            default_present: true,
          },
        },
        redis: { status: "ok", round_trip_ms: 0.4, error: null },
        models: [
          {
            id: "openvla-7b",
            backend: "openvla-http",
            status: "ok",
            detail: "http://gpu-1:8000 up",
            check_ms: 0.1,
            queue_depth: 0,
            max_queue: 256,
            latency_ms: { p50: 41, p95: 96, p99: 180 },
            endpoints: [
              {
                url: "http://gpu-1:8000",
                circuit: "closed",
                probe_ok: true,
                consecutive_failures: 0,
                outstanding: 1,
                last_error: null,
              },
            ],
          },
        ],
        batch_writers: [
          {
            writer: "inference-logs",
            buffered: 12,
            written: 91000,
            spilled: 0,
            replayed: 0,
            dropped: 0,
            dead_lettered: 0,
          },
        ],
        jobs: [
          {
            name: "analytics.rollups",
            interval_ms: 10000,
            last_run_at: "2026-12-05T13:59:55.000Z",
            last_duration_ms: 38.5,
            last_outcome: "ok",
            last_error: null,
            last_error_at: null,
            next_run_at: "2026-12-05T14:00:05.000Z",
            running: false,
            runs: 512,
            failures: 0,
          },
        ],
      },
    ],
  },
);
