import { type Static, Type } from "typebox";

export const MAX_OVERAGE_CAP = 10_000_000;

export const SettingsPatch = Type.Object(
  {
    overage: Type.Optional(
      Type.Boolean({
        description:
          "Metered overage: keep serving past the monthly included quota (requests and stream time), billed per " +
          "unit through Stripe, up to the caps. Only a `pro` customer may turn it on (else 409 " +
          "`overage_not_available`), and only with a `monthly_overage_cap` (given now or stored before).",
      }),
    ),
    monthly_overage_cap: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_OVERAGE_CAP,
        description: "Most requests served beyond the monthly included quota; the limiter refuses (429) past it.",
      }),
    ),
    stream_overage_cap_seconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_OVERAGE_CAP,
        description:
          "Most stream robot-seconds beyond the monthly stream allowance. Without it, stream time stops at the " +
          "allowance even while request overage is on.",
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      { overage: true, monthly_overage_cap: 50_000 },
      { overage: true, monthly_overage_cap: 50_000, stream_overage_cap_seconds: 36_000 },
      { overage: false },
    ],
  },
);
export type SettingsPatch = Static<typeof SettingsPatch>;

const nullableInt = (description: string) => Type.Union([Type.Integer(), Type.Null()], { description });

export const SettingsSchema = Type.Object(
  {
    overage: Type.Boolean({ description: "Whether metered overage is on." }),
    monthly_overage_cap: nullableInt("Requests allowed beyond the included quota per month; null: none set."),
    stream_overage_cap_seconds: nullableInt(
      "Stream robot-seconds allowed beyond the included allowance per month; null: none (no stream overage).",
    ),
    overage_available: Type.Boolean({
      description: "Whether this customer may turn overage on now (a `pro` customer with a Stripe customer).",
    }),
    included: Type.Object(
      {
        requests: nullableInt("Requests included per UTC calendar month; null: unlimited."),
        stream_seconds: nullableInt("Stream robot-seconds included per UTC calendar month; null: unlimited."),
      },
      { description: "What the plan (or the customer's override) includes; overage is what goes beyond." },
    ),
  },
  {
    examples: [
      {
        overage: true,
        monthly_overage_cap: 50_000,
        stream_overage_cap_seconds: 36_000,
        overage_available: true,
        included: { requests: 100_000, stream_seconds: 720_000 },
      },
    ],
  },
);
export type SettingsView = Static<typeof SettingsSchema>;
