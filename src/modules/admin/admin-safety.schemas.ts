import { type Static, Type } from "typebox";
import { IncidentPageSchema, IncidentQuery } from "../safety/safety.route-schemas.ts";

/** Wire schemas of `GET /admin/safety/incidents` and `GET /admin/safety/stops`. */

const CustomerId = Type.String({ format: "uuid", description: "The customer the incident or robot belongs to." });

export const AdminIncidentQuery = Type.Object(
  {
    customer_id: Type.Optional(Type.String({ format: "uuid", description: "Only this customer's incidents." })),
    ...IncidentQuery.properties,
  },
  { additionalProperties: false },
);
export type AdminIncidentQuery = Static<typeof AdminIncidentQuery>;

const incident = IncidentPageSchema.properties.data.items;

export const AdminIncidentPageSchema = Type.Object(
  {
    data: Type.Array(Type.Object({ customer_id: CustomerId, ...incident.properties }), {
      description: "Newest first, every customer's (or `customer_id`'s).",
    }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: "Pass back as `cursor` for the next (older) page; null at the end.",
    }),
  },
  {
    examples: [
      {
        data: [
          {
            customer_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
            id: "5a3f0c2e-8d41-4e0b-9d7e-2b1c0f9a7e11",
            at: "2026-11-26T10:00:00.000Z",
            robot_id: "arm-3",
            inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
            type: "keep_out_zone",
            severity: "critical",
            action_taken: "emergency_stop",
            measured: 0.012,
            limit: 0,
            step: 0,
            message: "predicted position is 0.012 m inside keep-out zone 0",
          },
        ],
        next_cursor: "MjAyNi0xMS0yNlQxMDowMDowMC4wMDBafDVhM2YwYzJlLTh...",
      },
    ],
  },
);

export const StopsQuery = Type.Object(
  {
    limit: Type.Integer({
      minimum: 1,
      maximum: 5000,
      default: 1000,
      description: "At most this many stopped robots (1 to 5000, default 1000).",
    }),
  },
  { additionalProperties: false },
);
export type StopsQuery = Static<typeof StopsQuery>;

export const StopsSchema = Type.Object(
  {
    data: Type.Array(
      Type.Object({
        customer_id: CustomerId,
        robot_id: Type.String(),
        at: Type.String({ description: "When the robot was stopped." }),
        reason: Type.String({ description: "The violation that stopped it." }),
        inference_id: Type.Union([Type.String(), Type.Null()]),
      }),
      { description: "Ordered by customer, then robot." },
    ),
    truncated: Type.Boolean({ description: "True when more robots are stopped than `limit`." }),
  },
  {
    examples: [
      {
        data: [
          {
            customer_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
            robot_id: "arm-3",
            at: "2026-11-26T10:00:00.000Z",
            reason: "predicted position is 0.012 m inside keep-out zone 0",
            inference_id: "0f8b1c1e-5d0a-4a57-9a43-0c3f8f0d2b11",
          },
        ],
        truncated: false,
      },
    ],
  },
);
