import { sql } from "drizzle-orm";
import { doublePrecision, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from "drizzle-orm/pg-core";
import { customers } from "./customers.ts";

/** One variant of a split experiment: requests assigned to it are served by `model`. */
export interface ExperimentVariant {
  readonly name: string;
  readonly model: string;
  readonly weight: number;
}

/**
 * A customer's model experiment (docs/experiments.md). `mode` split: requests that name no model
 * are routed to one of `variants` (by `assignment`: robot_id or request); `mode` shadow: a sampled
 * fraction of requests (`sample_rate`) is also run on `candidate_model` after the answer is sent.
 * At most one not-stopped experiment per customer and mode (the partial unique index); an
 * experiment whose `ends_at` passed is marked stopped before a new one is created.
 */
export const experiments = pgTable(
  "experiments",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** `split` or `shadow`. */
    mode: text("mode").notNull(),
    /** split: `robot_id` or `request`; null for shadow. */
    assignment: text("assignment"),
    /** split: the variants; null for shadow. */
    variants: jsonb("variants").$type<ExperimentVariant[]>(),
    /** shadow: the model run beside the served one, and the fraction of requests it sees. */
    candidateModel: text("candidate_model"),
    sampleRate: doublePrecision("sample_rate"),
    startsAt: timestamp("starts_at", { withTimezone: true }),
    endsAt: timestamp("ends_at", { withTimezone: true }),
    stoppedAt: timestamp("stopped_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    createdByUserId: uuid("created_by_user_id"),
    createdByApiKeyId: uuid("created_by_api_key_id"),
  },
  (t) => [
    index("experiments_customer_created_idx").on(t.customerId, t.createdAt.desc(), t.id.desc()),
    uniqueIndex("experiments_one_active_per_mode").on(t.customerId, t.mode).where(sql`${t.stoppedAt} is null`),
  ],
);

/**
 * One shadowed request: what the candidate model would have done beside what was served.
 * `candidate_action` is the candidate's raw action, `candidate_safety_status` the verdict the
 * safety gate would have given it (judged without side effects), the distances compare it with
 * the served action: translation = L2 of dims 0-2, rotation = L2 of dims 3-5, gripper = |dim 6|.
 * A failed candidate call keeps its `error_code` and no action. Rows follow the customer's
 * recording policy: no instruction text, only its normalized hash (`instruction_key`).
 */
export const shadowResults = pgTable(
  "shadow_results",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    experimentId: uuid("experiment_id")
      .notNull()
      .references(() => experiments.id, { onDelete: "cascade" }),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id, { onDelete: "cascade" }),
    inferenceId: uuid("inference_id").notNull(),
    robotId: text("robot_id"),
    instructionKey: text("instruction_key"),
    servedModel: text("served_model").notNull(),
    candidateModel: text("candidate_model").notNull(),
    servedAction: jsonb("served_action").$type<number[]>().notNull(),
    servedSafetyStatus: text("served_safety_status"),
    candidateAction: jsonb("candidate_action").$type<number[]>(),
    candidateSafetyStatus: text("candidate_safety_status"),
    translation: doublePrecision("translation"),
    rotation: doublePrecision("rotation"),
    gripper: doublePrecision("gripper"),
    candidateMs: doublePrecision("candidate_ms"),
    errorCode: text("error_code"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("shadow_results_experiment_created_idx").on(t.experimentId, t.createdAt.desc(), t.id.desc()),
    index("shadow_results_experiment_robot_idx").on(t.experimentId, t.robotId, t.createdAt.desc(), t.id.desc()),
    index("shadow_results_experiment_instruction_idx").on(
      t.experimentId,
      t.instructionKey,
      t.createdAt.desc(),
      t.id.desc(),
    ),
    // Retention and erasure delete per customer and age.
    index("shadow_results_customer_created_idx").on(t.customerId, t.createdAt),
  ],
);

export type ExperimentRow = typeof experiments.$inferSelect;
export type ShadowResultRow = typeof shadowResults.$inferSelect;
