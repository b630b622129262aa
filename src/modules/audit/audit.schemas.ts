import { type Static, Type } from "typebox";

const Uuid = (description: string) => Type.String({ format: "uuid", description });

const common = {
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: "Page size (1 to 200, default 50)." }),
  cursor: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: "Opaque `next_cursor` of the previous page." }),
  ),
  actor_user_id: Type.Optional(Uuid("Entries acted by this user.")),
  action: Type.Optional(
    Type.String({
      pattern: "^[a-z0-9_.]{1,64}$",
      description: "Action prefix: `api_key.` matches every API key action, `api_key.create` just that one.",
      examples: ["api_key."],
    }),
  ),
  target_type: Type.Optional(
    Type.String({
      pattern: "^[a-z0-9_]{1,64}$",
      description: "customer, user, api_key, robot, audit_log, ...",
      examples: ["api_key"],
    }),
  ),
  target_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: "The target's id." })),
  from: Type.Optional(Type.String({ format: "date-time", description: "Inclusive lower bound on `at`." })),
  to: Type.Optional(Type.String({ format: "date-time", description: "Exclusive upper bound on `at`." })),
};

export const AdminAuditQuery = Type.Object(
  {
    customer_id: Type.Optional(Uuid("Entries about this customer or acted by one of its users or keys.")),
    ...common,
  },
  { additionalProperties: false },
);
export type AdminAuditQuery = Static<typeof AdminAuditQuery>;

export const OwnAuditQuery = Type.Object(common, { additionalProperties: false });
export type OwnAuditQuery = Static<typeof OwnAuditQuery>;

const NullableUuid = (description: string) =>
  Type.Union([Type.String({ format: "uuid" }), Type.Null()], { description });

export const AuditEntrySchema = Type.Object({
  id: Type.String({ format: "uuid" }),
  at: Type.String({ format: "date-time" }),
  action: Type.String({ description: "Dotted verb on a resource, e.g. `api_key.rotate`, `customer.tier_change`." }),
  actor_user_id: NullableUuid("The user who acted (null: an API key, a job or Stripe's webhook)."),
  actor_customer_id: NullableUuid("The actor's customer (another one for a superuser)."),
  actor_api_key_id: NullableUuid("The API key that acted, when one did."),
  customer_id: NullableUuid("The customer the entry is about (null: server-wide)."),
  target_type: Type.String(),
  target_id: Type.Union([Type.String(), Type.Null()]),
  request_id: Type.Union([Type.String(), Type.Null()], {
    description: "The `X-Request-Id` of the request that acted.",
  }),
  ip: Type.Union([Type.String(), Type.Null()], {
    description: "The client address. On `/v1/audit-log` only for the customer's own actors (null for an operator's).",
  }),
  details: Type.Record(Type.String(), Type.Unknown(), {
    description: "Ids, changed field names and non-secret values (tier names, caps); never a secret or content.",
  }),
});

const EXAMPLE_ENTRY = {
  id: "7d8e2f4a-1b3c-4d5e-8f90-a1b2c3d4e5f6",
  at: "2026-12-05T10:00:00.000Z",
  action: "api_key.create",
  actor_user_id: "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b",
  actor_customer_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
  actor_api_key_id: null,
  customer_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
  target_type: "api_key",
  target_id: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
  request_id: "req-1234",
  ip: "203.0.113.7",
  details: { scopes: ["inference"], fields: ["name", "robot_id"] },
};

export const AuditPageSchema = Type.Object(
  {
    data: Type.Array(AuditEntrySchema, { description: "Newest first." }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass back as `cursor` for the next (older) page; null at the end.",
    }),
  },
  {
    examples: [
      {
        data: [
          EXAMPLE_ENTRY,
          {
            ...EXAMPLE_ENTRY,
            id: "8e9f3a5b-2c4d-4e6f-9a01-b2c3d4e5f6a7",
            at: "2026-12-05T09:00:00.000Z",
            action: "customer.tier_change",
            actor_user_id: null,
            actor_customer_id: null,
            target_type: "customer",
            target_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
            request_id: null,
            ip: null,
            details: { from: "free", to: "pro", source: "stripe", stripe_event_id: "evt_1Q2w3E4r" },
          },
        ],
        next_cursor: "MjAyNi0xMi0wNVQwOTowMDowMC4wMDBafDhlOWYzYTViLTJjNGQtNGU2Zi05YTAxLWIyYzNkNGU1ZjZhNw",
      },
    ],
  },
);
export type AuditPage = Static<typeof AuditPageSchema>;
