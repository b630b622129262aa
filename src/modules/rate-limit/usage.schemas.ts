import { type Static, Type } from "typebox";

const WindowUsage = (name: string) =>
  Type.Object(
    {
      used: Type.Integer({ description: `Requests counted in the current ${name} window.` }),
      limit: Type.Union([Type.Integer(), Type.Null()], { description: "null: unlimited." }),
      remaining: Type.Union([Type.Integer(), Type.Null()], { description: "null: unlimited." }),
      resets_at: Type.String({ format: "date-time", description: "When the window's quota is fully available again." }),
    },
    { description: `The ${name} window.` },
  );

const StreamWindowUsage = (name: string) =>
  Type.Object(
    {
      used_s: Type.Integer({
        description: `Stream session time (robot-seconds, all sessions) in the current ${name}.`,
      }),
      limit_s: Type.Union([Type.Integer(), Type.Null()], { description: "null: unlimited." }),
      remaining_s: Type.Union([Type.Integer(), Type.Null()], { description: "null: unlimited." }),
      resets_at: Type.String({ format: "date-time", description: "When the window starts again at 0." }),
    },
    { description: `Stream time in the ${name} (native and openpi sessions; frames are not counted as requests).` },
  );

export const UsageSchema = Type.Object(
  {
    customer_id: Type.String({ format: "uuid" }),
    tier: Type.Union([Type.Literal("free"), Type.Literal("pro"), Type.Literal("enterprise")]),
    limiter: Type.Union([Type.Literal("redis"), Type.Literal("memory"), Type.Literal("fallback")], {
      description:
        "Which limiter answered: shared Redis, in-process (no Redis), or the in-process fallback while Redis is unavailable.",
    }),
    minute: WindowUsage("minute (smooth: GCRA)"),
    day: WindowUsage("UTC day"),
    month: WindowUsage("UTC calendar month"),
    stream_day: StreamWindowUsage("UTC day"),
    stream_month: StreamWindowUsage("UTC calendar month"),
    stream_max_fps: Type.Union([Type.Integer(), Type.Null()], {
      description: "Frame-rate ceiling of one stream session; frames above it are dropped (`rate_ceiling`).",
    }),
  },
  {
    examples: [
      {
        customer_id: "5e0c7a3c-2f7e-4b8a-9a51-0c2a8b4d6e1f",
        tier: "free",
        limiter: "redis",
        minute: { used: 3, limit: 10, remaining: 7, resets_at: "2026-11-26T21:15:18.000Z" },
        day: { used: 120, limit: 1000, remaining: 880, resets_at: "2026-11-27T00:00:00.000Z" },
        month: { used: 4210, limit: 10000, remaining: 5790, resets_at: "2026-12-01T00:00:00.000Z" },
        stream_day: { used_s: 600, limit_s: 1800, remaining_s: 1200, resets_at: "2026-11-27T00:00:00.000Z" },
        stream_month: { used_s: 7200, limit_s: 18000, remaining_s: 10800, resets_at: "2026-12-01T00:00:00.000Z" },
        stream_max_fps: 15,
      },
    ],
  },
);
export type Usage = Static<typeof UsageSchema>;
