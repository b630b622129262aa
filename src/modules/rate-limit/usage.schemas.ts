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
      },
    ],
  },
);
export type Usage = Static<typeof UsageSchema>;
