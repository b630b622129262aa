CREATE TABLE "analytics_watermarks" (
	"name" text PRIMARY KEY NOT NULL,
	"xid" bigint NOT NULL,
	"row_id" uuid NOT NULL,
	"row_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "instruction_analytics" (
	"customer_id" uuid NOT NULL,
	"instruction_key" text NOT NULL,
	"day" date NOT NULL,
	"instruction" text,
	"requests" bigint DEFAULT 0 NOT NULL,
	"errors" bigint DEFAULT 0 NOT NULL,
	"latency_total" "bytea",
	"feedback_count" bigint DEFAULT 0 NOT NULL,
	"success_rating_sum" bigint DEFAULT 0 NOT NULL,
	"success_rating_count" bigint DEFAULT 0 NOT NULL,
	"failures" bigint DEFAULT 0 NOT NULL,
	"first_seen" timestamp with time zone,
	"last_seen" timestamp with time zone,
	CONSTRAINT "instruction_analytics_pk" PRIMARY KEY("customer_id","instruction_key","day")
);
--> statement-breakpoint
CREATE TABLE "robot_performance_metrics" (
	"customer_id" uuid NOT NULL,
	"day" date NOT NULL,
	"robot_id" text NOT NULL,
	"model" text NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	"errors" bigint DEFAULT 0 NOT NULL,
	"errors_by_code" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"safety_pass" bigint DEFAULT 0 NOT NULL,
	"safety_clamped" bigint DEFAULT 0 NOT NULL,
	"safety_rejected" bigint DEFAULT 0 NOT NULL,
	"safety_emergency_stop" bigint DEFAULT 0 NOT NULL,
	"latency_total" "bytea",
	"latency_model" "bytea",
	"latency_queue" "bytea",
	"feedback_count" bigint DEFAULT 0 NOT NULL,
	"success_rating_sum" bigint DEFAULT 0 NOT NULL,
	"success_rating_count" bigint DEFAULT 0 NOT NULL,
	"safety_rating_sum" bigint DEFAULT 0 NOT NULL,
	"safety_rating_count" bigint DEFAULT 0 NOT NULL,
	"corrections" bigint DEFAULT 0 NOT NULL,
	"correction_translation_sum" double precision DEFAULT 0 NOT NULL,
	"correction_rotation_sum" double precision DEFAULT 0 NOT NULL,
	"correction_gripper_sum" double precision DEFAULT 0 NOT NULL,
	"failures" bigint DEFAULT 0 NOT NULL,
	"first_seen" timestamp with time zone,
	"last_seen" timestamp with time zone,
	CONSTRAINT "robot_performance_metrics_pk" PRIMARY KEY("customer_id","day","robot_id","model")
);
--> statement-breakpoint
CREATE TABLE "usage_hourly_metrics" (
	"customer_id" uuid NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"model" text NOT NULL,
	"source" text NOT NULL,
	"api_key_id" uuid NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	"errors" bigint DEFAULT 0 NOT NULL,
	"errors_by_code" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"safety_pass" bigint DEFAULT 0 NOT NULL,
	"safety_clamped" bigint DEFAULT 0 NOT NULL,
	"safety_rejected" bigint DEFAULT 0 NOT NULL,
	"safety_emergency_stop" bigint DEFAULT 0 NOT NULL,
	"latency_total" "bytea",
	"latency_model" "bytea",
	"latency_queue" "bytea",
	"feedback_count" bigint DEFAULT 0 NOT NULL,
	"success_rating_sum" bigint DEFAULT 0 NOT NULL,
	"success_rating_count" bigint DEFAULT 0 NOT NULL,
	"safety_rating_sum" bigint DEFAULT 0 NOT NULL,
	"safety_rating_count" bigint DEFAULT 0 NOT NULL,
	"corrections" bigint DEFAULT 0 NOT NULL,
	"correction_translation_sum" double precision DEFAULT 0 NOT NULL,
	"correction_rotation_sum" double precision DEFAULT 0 NOT NULL,
	"correction_gripper_sum" double precision DEFAULT 0 NOT NULL,
	"failures" bigint DEFAULT 0 NOT NULL,
	"first_seen" timestamp with time zone,
	"last_seen" timestamp with time zone,
	CONSTRAINT "usage_hourly_metrics_pk" PRIMARY KEY("customer_id","hour","model","source","api_key_id")
);
--> statement-breakpoint
-- ingest_xid: existing rows all get this migration's transaction id (the volatile default rewrites
-- the table once), so the analytics job counts the history on its first runs, in batches.
ALTER TABLE "feedback" ADD COLUMN "ingest_xid" bigint DEFAULT (pg_current_xact_id()::text::bigint) NOT NULL;--> statement-breakpoint
ALTER TABLE "inference_logs" ADD COLUMN "instruction_key" text;--> statement-breakpoint
ALTER TABLE "inference_logs" ADD COLUMN "ingest_xid" bigint DEFAULT (pg_current_xact_id()::text::bigint) NOT NULL;--> statement-breakpoint
ALTER TABLE "instruction_analytics" ADD CONSTRAINT "instruction_analytics_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "robot_performance_metrics" ADD CONSTRAINT "robot_performance_metrics_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_hourly_metrics" ADD CONSTRAINT "usage_hourly_metrics_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "instruction_analytics_customer_day_idx" ON "instruction_analytics" USING btree ("customer_id","day");--> statement-breakpoint
CREATE INDEX "feedback_ingest_idx" ON "feedback" USING btree ("ingest_xid","id");--> statement-breakpoint
CREATE INDEX "inference_logs_ingest_idx" ON "inference_logs" USING btree ("ingest_xid","id","created_at");