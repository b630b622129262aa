import { sql } from "drizzle-orm";
import {
  bigint,
  customType,
  date,
  doublePrecision,
  index,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/** A DDSketch in its binary form (src/modules/analytics/sketch.ts, encodeSketch). */
const sketch = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => "bytea" });

const count = (name: string) => bigint(name, { mode: "number" }).notNull().default(0);
const sum = (name: string) => doublePrecision(name).notNull().default(0);

/**
 * The measures every rollup row carries (docs/architecture.md, "Analytics rollups"): request and
 * error counts, errors by code, safety verdicts, mergeable latency sketches, feedback counts and
 * rating sums, first/last request seen. Sums, not means, so rows add up over any range.
 */
const measures = () => ({
  requests: count("requests"),
  errors: count("errors"),
  errorsByCode: jsonb("errors_by_code").$type<Record<string, number>>().notNull().default({}),
  safetyPass: count("safety_pass"),
  safetyClamped: count("safety_clamped"),
  safetyRejected: count("safety_rejected"),
  safetyEmergencyStop: count("safety_emergency_stop"),
  latencyTotal: sketch("latency_total"),
  latencyModel: sketch("latency_model"),
  latencyQueue: sketch("latency_queue"),
  feedbackCount: count("feedback_count"),
  successRatingSum: count("success_rating_sum"),
  successRatingCount: count("success_rating_count"),
  safetyRatingSum: count("safety_rating_sum"),
  safetyRatingCount: count("safety_rating_count"),
  corrections: count("corrections"),
  correctionTranslationSum: sum("correction_translation_sum"),
  correctionRotationSum: sum("correction_rotation_sum"),
  correctionGripperSum: sum("correction_gripper_sum"),
  failures: count("failures"),
  firstSeen: timestamp("first_seen", { withTimezone: true }),
  lastSeen: timestamp("last_seen", { withTimezone: true }),
});

/**
 * Daily rollup per (customer, robot, model, UTC day), maintained by the analytics job from
 * inference_logs and feedback. `robot_id` is '' for requests that named no robot (a primary key
 * column cannot be null).
 */
export const robotPerformanceMetrics = pgTable(
  "robot_performance_metrics",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    day: date("day", { mode: "string" }).notNull(),
    robotId: text("robot_id").notNull(),
    model: text("model").notNull(),
    ...measures(),
  },
  (t) => [
    primaryKey({ name: "robot_performance_metrics_pk", columns: [t.customerId, t.day, t.robotId, t.model] }),
    // Platform-wide ranges over every customer (GET /admin/stats).
    index("robot_performance_metrics_day_customer_idx").on(t.day, t.customerId),
  ],
);

/**
 * Hourly rollup per (customer, model, source, API key, UTC hour): the time series. `api_key_id`
 * is the nil UUID for requests made with a user session.
 */
export const usageHourlyMetrics = pgTable(
  "usage_hourly_metrics",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    hour: timestamp("hour", { withTimezone: true }).notNull(),
    model: text("model").notNull(),
    source: text("source").notNull(),
    apiKeyId: uuid("api_key_id").notNull(),
    ...measures(),
  },
  (t) => [
    primaryKey({ name: "usage_hourly_metrics_pk", columns: [t.customerId, t.hour, t.model, t.source, t.apiKeyId] }),
    // Platform-wide ranges over every customer (GET /admin/stats).
    index("usage_hourly_metrics_hour_customer_idx").on(t.hour, t.customerId),
  ],
);

/**
 * Instructions per (customer, normalized-instruction hash, UTC day): the day in the key keeps the
 * table decomposable (a range can be rebuilt, a period queried); the API merges the days.
 * `instruction` is the text only when the log row kept it (LOG_INSTRUCTIONS and consent), else null.
 */
export const instructionAnalytics = pgTable(
  "instruction_analytics",
  {
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    instructionKey: text("instruction_key").notNull(),
    day: date("day", { mode: "string" }).notNull(),
    instruction: text("instruction"),
    requests: count("requests"),
    errors: count("errors"),
    latencyTotal: sketch("latency_total"),
    feedbackCount: count("feedback_count"),
    successRatingSum: count("success_rating_sum"),
    successRatingCount: count("success_rating_count"),
    failures: count("failures"),
    firstSeen: timestamp("first_seen", { withTimezone: true }),
    lastSeen: timestamp("last_seen", { withTimezone: true }),
  },
  (t) => [
    primaryKey({ name: "instruction_analytics_pk", columns: [t.customerId, t.instructionKey, t.day] }),
    index("instruction_analytics_customer_day_idx").on(t.customerId, t.day),
  ],
);

/**
 * How far the analytics job has read each source table: every row whose (ingest_xid, id,
 * created_at) is at or below the position is counted in the rollups, none above it.
 */
export const analyticsWatermarks = pgTable("analytics_watermarks", {
  name: text("name").primaryKey(),
  xid: bigint("xid", { mode: "number" }).notNull(),
  rowId: uuid("row_id").notNull(),
  rowAt: timestamp("row_at", { withTimezone: true }).notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().default(sql`now()`),
});

export type RobotPerformanceRow = typeof robotPerformanceMetrics.$inferSelect;
export type UsageHourlyRow = typeof usageHourlyMetrics.$inferSelect;
export type InstructionAnalyticsRow = typeof instructionAnalytics.$inferSelect;
