import { type Static, Type } from "typebox";

/** Wire schemas of the /v1/analytics routes. */

const range = {
  from: Type.Optional(
    Type.String({
      format: "date-time",
      description:
        "Inclusive lower bound (default: `to` minus 30 days). Daily buckets: the UTC days the range touches.",
      examples: ["2026-11-01T00:00:00Z"],
    }),
  ),
  to: Type.Optional(
    Type.String({
      format: "date-time",
      description: "Exclusive upper bound (default: now).",
      examples: ["2026-12-01T00:00:00Z"],
    }),
  ),
};

export const UsageQuery = Type.Object(
  {
    ...range,
    granularity: Type.Union([Type.Literal("hour"), Type.Literal("day")], {
      default: "day",
      description: "Bucket size. Ranges are capped at 400 days (day) and 31 days (hour).",
    }),
    group_by: Type.Optional(
      Type.Union([Type.Literal("model"), Type.Literal("robot"), Type.Literal("api_key"), Type.Literal("source")], {
        description:
          "One series per model, robot, API key or source (rest, act, stream, openpi). `robot` is daily only.",
      }),
    ),
  },
  { additionalProperties: false },
);

const ms = (d: string) => Type.Union([Type.Number(), Type.Null()], { description: d });

const StatsSchema = Type.Object({
  requests: Type.Integer(),
  errors: Type.Integer(),
  success_rate: Type.Union([Type.Number(), Type.Null()], {
    description: "(requests - errors) / requests; null without requests.",
  }),
  p50_ms: ms("Median total latency of successful requests (DDSketch, within 1 %)."),
  p95_ms: ms("95th percentile."),
  p99_ms: ms("99th percentile."),
});

const STATS_EXAMPLE = { requests: 1200, errors: 6, success_rate: 0.995, p50_ms: 41.2, p95_ms: 88.7, p99_ms: 130.1 };

export const UsageSchema = Type.Object(
  {
    from: Type.String({ format: "date-time" }),
    to: Type.String({ format: "date-time" }),
    granularity: Type.Union([Type.Literal("hour"), Type.Literal("day")]),
    group_by: Type.Union([Type.String(), Type.Null()]),
    series: Type.Array(
      Type.Object({
        group: Type.Union([Type.String(), Type.Null()], {
          description:
            "The model, robot id, API key id or source; null for the ungrouped series, requests without robot, or session (JWT) requests.",
        }),
        points: Type.Array(Type.Object({ start: Type.String({ format: "date-time" }), ...StatsSchema.properties }), {
          description: "Buckets with requests, oldest first (empty buckets are left out).",
        }),
        totals: StatsSchema,
      }),
    ),
    totals: StatsSchema,
  },
  {
    examples: [
      {
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-11-03T00:00:00.000Z",
        granularity: "day",
        group_by: "model",
        series: [
          {
            group: "mock-openvla-7b",
            points: [
              { start: "2026-11-01T00:00:00.000Z", ...STATS_EXAMPLE },
              { start: "2026-11-02T00:00:00.000Z", ...STATS_EXAMPLE },
            ],
            totals: { ...STATS_EXAMPLE, requests: 2400, errors: 12 },
          },
        ],
        totals: { ...STATS_EXAMPLE, requests: 2400, errors: 12 },
      },
    ],
  },
);

export const RangeQuery = Type.Object(range, { additionalProperties: false });

const Count = Type.Object({ key: Type.String(), count: Type.Integer() });

export const SafetyAnalyticsSchema = Type.Object(
  {
    from: Type.String({ format: "date-time" }),
    to: Type.String({ format: "date-time" }),
    incidents: Type.Integer(),
    by_type: Type.Array(Count, { description: "Incidents per violation type, most frequent first." }),
    by_severity: Type.Array(Count),
    by_robot: Type.Array(Count, { description: "The 20 robots with the most incidents." }),
    actions: Type.Array(Count, { description: "Incidents by action taken: none, clamped, rejected, emergency_stop." }),
    verdicts: Type.Object(
      { pass: Type.Integer(), clamped: Type.Integer(), rejected: Type.Integer(), emergency_stop: Type.Integer() },
      { description: "Safety verdicts on returned actions (from the rollups, UTC days of the range)." },
    ),
    daily: Type.Array(Type.Object({ day: Type.String(), incidents: Type.Integer() })),
    top_rules: Type.Array(
      Type.Object({ violation_type: Type.String(), severity: Type.String(), count: Type.Integer() }),
      { description: "The 10 most frequently violated rules (type and severity)." },
    ),
    rising_robots: Type.Array(
      Type.Object({
        robot_id: Type.String(),
        incidents_first_half: Type.Integer(),
        incidents_second_half: Type.Integer(),
        rate_first_half: Type.Number({ description: "Incidents per request." }),
        rate_second_half: Type.Number(),
      }),
      { description: "Robots whose incidents per request rose from the first half of the range to the second." },
    ),
  },
  {
    examples: [
      {
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-12-01T00:00:00.000Z",
        incidents: 3,
        by_type: [
          { key: "workspace", count: 2 },
          { key: "linear_velocity", count: 1 },
        ],
        by_severity: [{ key: "high", count: 3 }],
        by_robot: [{ key: "arm-3", count: 3 }],
        actions: [{ key: "clamped", count: 3 }],
        verdicts: { pass: 980, clamped: 3, rejected: 0, emergency_stop: 0 },
        daily: [{ day: "2026-11-20", incidents: 3 }],
        top_rules: [{ violation_type: "workspace", severity: "high", count: 2 }],
        rising_robots: [
          {
            robot_id: "arm-3",
            incidents_first_half: 0,
            incidents_second_half: 3,
            rate_first_half: 0,
            rate_second_half: 0.006,
          },
        ],
      },
    ],
  },
);

export const ROBOT_SORTS = [
  "requests",
  "error_rate",
  "p95_ms",
  "last_seen",
  "robot_id",
  "mean_success_rating",
] as const;

export const RobotsQuery = Type.Object(
  {
    ...range,
    sort: Type.Union(
      ROBOT_SORTS.map((s) => Type.Literal(s)),
      { default: "requests", description: "Sort key." },
    ),
    order: Type.Union([Type.Literal("asc"), Type.Literal("desc")], {
      default: "desc",
      description: "Sort direction (robot_id ties break ascending).",
    }),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50, description: "Page size (max 1000)." }),
    offset: Type.Integer({
      minimum: 0,
      maximum: 1_000_000,
      default: 0,
      description: "Robots to skip (`next_offset` of the previous page).",
    }),
  },
  { additionalProperties: false },
);

const nullNum = Type.Union([Type.Number(), Type.Null()]);

export const RobotProfileSchema = Type.Object({
  robot_id: Type.String(),
  requests: Type.Integer(),
  errors: Type.Integer(),
  error_rate: nullNum,
  p50_ms: nullNum,
  p95_ms: nullNum,
  p99_ms: nullNum,
  safety: Type.Object({
    pass: Type.Integer(),
    clamped: Type.Integer(),
    rejected: Type.Integer(),
    emergency_stop: Type.Integer(),
  }),
  feedback: Type.Integer({ description: "Feedback reports on this robot's inferences." }),
  mean_success_rating: nullNum,
  mean_safety_rating: nullNum,
  corrections: Type.Integer(),
  mean_correction: Type.Object(
    { translation: nullNum, rotation: nullNum, gripper: nullNum },
    { description: "Mean L2 distance between corrected and model actions, per part." },
  ),
  failures: Type.Integer({ description: "Failure reports." }),
  first_seen: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  last_seen: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
});

const ROBOT_EXAMPLE = {
  robot_id: "arm-3",
  requests: 1200,
  errors: 6,
  error_rate: 0.005,
  p50_ms: 41.2,
  p95_ms: 88.7,
  p99_ms: 130.1,
  safety: { pass: 1180, clamped: 14, rejected: 0, emergency_stop: 0 },
  feedback: 12,
  mean_success_rating: 4.25,
  mean_safety_rating: 4.5,
  corrections: 2,
  mean_correction: { translation: 0.012, rotation: 0.05, gripper: 0 },
  failures: 1,
  first_seen: "2026-11-01T08:00:00.000Z",
  last_seen: "2026-11-30T17:12:00.000Z",
};

export const RobotsSchema = Type.Object(
  {
    from: Type.String({ format: "date-time" }),
    to: Type.String({ format: "date-time" }),
    total: Type.Integer({ description: "Robots with activity in the range." }),
    data: Type.Array(RobotProfileSchema),
    next_offset: Type.Union([Type.Integer(), Type.Null()], {
      description: "Offset of the next page; null on the last.",
    }),
  },
  {
    examples: [
      {
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-12-01T00:00:00.000Z",
        total: 1,
        data: [ROBOT_EXAMPLE],
        next_offset: null,
      },
    ],
  },
);

export const InstructionsQuery = Type.Object(
  {
    ...range,
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 20, description: "How many instructions (max 500)." }),
    sort: Type.Union([Type.Literal("count"), Type.Literal("failure_rate"), Type.Literal("rating")], {
      default: "count",
      description:
        "count: most used first; failure_rate: (errors + failure reports) / requests, highest first; rating: lowest mean success rating first.",
    }),
  },
  { additionalProperties: false },
);

export const InstructionsSchema = Type.Object(
  {
    from: Type.String({ format: "date-time" }),
    to: Type.String({ format: "date-time" }),
    sort: Type.String(),
    data: Type.Array(
      Type.Object({
        instruction_key: Type.String({
          description: "SHA-256 of the normalized instruction (trimmed, case-folded, whitespace collapsed).",
        }),
        instruction: Type.Union([Type.String(), Type.Null()], {
          description: "The text, when LOG_INSTRUCTIONS and the customer's consent allowed storing it; else null.",
        }),
        count: Type.Integer(),
        errors: Type.Integer(),
        success_rate: nullNum,
        failure_reports: Type.Integer(),
        failure_rate: nullNum,
        mean_success_rating: nullNum,
        ratings: Type.Integer(),
        p50_ms: nullNum,
        p95_ms: nullNum,
        first_seen: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
        last_seen: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
      }),
    ),
  },
  {
    examples: [
      {
        from: "2026-11-01T00:00:00.000Z",
        to: "2026-12-01T00:00:00.000Z",
        sort: "count",
        data: [
          {
            instruction_key: "3b5d5c3712955042212316173ccf37be800d6d4ae2be9e2f1b0fd9c6a87d1f8f",
            instruction: "pick up the red cup",
            count: 830,
            errors: 2,
            success_rate: 0.9976,
            failure_reports: 3,
            failure_rate: 0.006,
            mean_success_rating: 4.2,
            ratings: 15,
            p50_ms: 40.8,
            p95_ms: 86.1,
            first_seen: "2026-11-01T08:00:00.000Z",
            last_seen: "2026-11-30T17:12:00.000Z",
          },
        ],
      },
    ],
  },
);

export const CsvSchema = Type.String({
  description: "The same data as CSV (RFC 4180, header row), when the request sends `Accept: text/csv`.",
  examples: [
    "group,start,requests,errors,success_rate,p50_ms,p95_ms,p99_ms\nmock-openvla-7b,2026-11-01T00:00:00.000Z,1200,6,0.995,41.2,88.7,130.1\n",
  ],
});

export type UsageQueryT = Static<typeof UsageQuery>;
