CREATE TABLE "experiments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"name" text NOT NULL,
	"mode" text NOT NULL,
	"assignment" text,
	"variants" jsonb,
	"candidate_model" text,
	"sample_rate" double precision,
	"starts_at" timestamp with time zone,
	"ends_at" timestamp with time zone,
	"stopped_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by_user_id" uuid,
	"created_by_api_key_id" uuid
);
--> statement-breakpoint
CREATE TABLE "shadow_results" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"experiment_id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"inference_id" uuid NOT NULL,
	"robot_id" text,
	"instruction_key" text,
	"served_model" text NOT NULL,
	"candidate_model" text NOT NULL,
	"served_action" jsonb NOT NULL,
	"served_safety_status" text,
	"candidate_action" jsonb,
	"candidate_safety_status" text,
	"translation" double precision,
	"rotation" double precision,
	"gripper" double precision,
	"candidate_ms" double precision,
	"error_code" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "inference_logs" ADD COLUMN "experiment_id" uuid;--> statement-breakpoint
ALTER TABLE "inference_logs" ADD COLUMN "variant" text;--> statement-breakpoint
ALTER TABLE "experiments" ADD CONSTRAINT "experiments_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "shadow_results" ADD CONSTRAINT "shadow_results_experiment_id_experiments_id_fk" FOREIGN KEY ("experiment_id") REFERENCES "public"."experiments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "shadow_results" ADD CONSTRAINT "shadow_results_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "experiments_customer_created_idx" ON "experiments" USING btree ("customer_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE UNIQUE INDEX "experiments_one_active_per_mode" ON "experiments" USING btree ("customer_id","mode") WHERE "experiments"."stopped_at" is null;--> statement-breakpoint
CREATE INDEX "shadow_results_experiment_created_idx" ON "shadow_results" USING btree ("experiment_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "shadow_results_experiment_robot_idx" ON "shadow_results" USING btree ("experiment_id","robot_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "shadow_results_experiment_instruction_idx" ON "shadow_results" USING btree ("experiment_id","instruction_key","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "shadow_results_customer_created_idx" ON "shadow_results" USING btree ("customer_id","created_at");--> statement-breakpoint
CREATE INDEX "inference_logs_experiment_idx" ON "inference_logs" USING btree ("customer_id","experiment_id","variant") WHERE "inference_logs"."experiment_id" is not null;