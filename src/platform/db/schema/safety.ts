import {
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/**
 * One row per safety violation found on an action the service returned (written in batches).
 * `severity` is low|medium|high|critical, `action_taken` none|clamped|rejected|emergency_stop,
 * `violation_type` one of the evaluator's types (workspace, linear_velocity, collision, ...).
 */
export const safetyIncidents = pgTable(
  "safety_incidents",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    robotId: text("robot_id").notNull(),
    inferenceId: text("inference_id"),
    violationType: text("violation_type").notNull(),
    severity: text("severity").notNull(),
    actionTaken: text("action_taken").notNull(),
    measured: doublePrecision("measured"),
    limitValue: doublePrecision("limit_value"),
    step: integer("step").notNull().default(0),
    message: text("message"),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("safety_incidents_customer_at_idx").on(t.customerId, t.at),
    index("safety_incidents_customer_robot_at_idx").on(t.customerId, t.robotId, t.at),
    // Every customer's incidents, newest first (GET /admin/safety/incidents, /admin/stats).
    index("safety_incidents_at_id_idx").on(t.at, t.id),
  ],
);

export type SafetyIncidentRow = typeof safetyIncidents.$inferSelect;

/**
 * Robots of a customer: the stored safety profile (the API form, null = defaults) and when the
 * robot was last seen in an inference request.
 */
export const robotProfiles = pgTable(
  "robot_profiles",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    robotId: text("robot_id").notNull(),
    profile: jsonb("profile").$type<Record<string, unknown>>(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: "robot_profiles_customer_robot_pk", columns: [t.customerId, t.robotId] })],
);

export type RobotProfileRow = typeof robotProfiles.$inferSelect;
