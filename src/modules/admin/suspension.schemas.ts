import { type Static, Type } from "typebox";

/** Wire schemas of the suspension and superuser routes (docs/admin.md). */

const EXAMPLE_CUSTOMER = "5b0e7a2c-3f4d-4e1a-9c7b-2d8e6f1a0b3c";
const EXAMPLE_USER = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

/** Longest reason accepted: it is shown to the customer's members in every refusal. */
export const MAX_REASON_CHARS = 500;

const reason = (description: string) =>
  Type.String({
    minLength: 1,
    maxLength: MAX_REASON_CHARS,
    // At least one visible character: a reason of spaces says nothing.
    pattern: "\\S",
    description,
  });

export const CustomerParams = Type.Object({
  customer_id: Type.String({ format: "uuid", description: "The customer's id." }),
});

export const UserParams = Type.Object({
  user_id: Type.String({ format: "uuid", description: "The user's id." }),
});

export const SuspendBody = Type.Object(
  {
    reason: reason(
      `Why (1..${MAX_REASON_CHARS} characters). Shown to the customer: in every 403 \`customer_suspended\` (API keys, sessions, sign-in) and in the close reason of its streams; recorded in the audit log.`,
    ),
  },
  {
    additionalProperties: false,
    examples: [{ reason: "Unpaid invoices since 2026-10; contact billing@example.com." }],
  },
);
export type SuspendBodyType = Static<typeof SuspendBody>;

export const UnsuspendBody = Type.Object(
  {
    reason: Type.Optional(reason(`Why it is lifted (1..${MAX_REASON_CHARS} characters); recorded in the audit log.`)),
  },
  { additionalProperties: false, examples: [{ reason: "Invoices paid." }, {}] },
);
export type UnsuspendBodyType = Static<typeof UnsuspendBody>;

export const SuspensionSchema = Type.Object(
  {
    customer_id: Type.String({ format: "uuid" }),
    name: Type.String(),
    email: Type.String(),
    status: Type.Enum(["active", "suspended"]),
    suspended_at: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
    suspended_reason: Type.Union([Type.String(), Type.Null()]),
    members: Type.Integer({
      minimum: 0,
      description: "Users of the customer whose sessions and sign-in this affects.",
    }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        customer_id: EXAMPLE_CUSTOMER,
        name: "Analytical Robotics",
        email: "ada@example.com",
        status: "suspended",
        suspended_at: "2026-12-06T01:30:00.000Z",
        suspended_reason: "Unpaid invoices since 2026-10; contact billing@example.com.",
        members: 3,
      },
    ],
  },
);

export const SuperuserBody = Type.Object(
  { is_superuser: Type.Boolean({ description: "true grants the operator role, false revokes it." }) },
  { additionalProperties: false, examples: [{ is_superuser: true }, { is_superuser: false }] },
);
export type SuperuserBodyType = Static<typeof SuperuserBody>;

export const SuperuserSchema = Type.Object(
  {
    user_id: Type.String({ format: "uuid" }),
    email: Type.String(),
    customer_id: Type.String({ format: "uuid" }),
    is_superuser: Type.Boolean(),
    changed: Type.Boolean({
      description: "false when the user already had this flag: nothing changed and nothing was audited.",
    }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        user_id: EXAMPLE_USER,
        email: "grace@example.com",
        customer_id: EXAMPLE_CUSTOMER,
        is_superuser: true,
        changed: true,
      },
    ],
  },
);
