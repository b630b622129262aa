CREATE TABLE "inference_logs" (
	"id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"customer_id" uuid NOT NULL,
	"api_key_id" uuid,
	"user_id" uuid,
	"model" text NOT NULL,
	"backend" text,
	"robot_id" text,
	"instruction" text,
	"instruction_sha256" text,
	"image_sha256" text,
	"action" jsonb,
	"action_chunk" jsonb,
	"unnorm_key" text,
	"status" text NOT NULL,
	"error_code" text,
	"preprocess_ms" real,
	"queue_ms" real,
	"model_ms" real,
	"total_ms" double precision NOT NULL,
	"source" text NOT NULL,
	CONSTRAINT "inference_logs_id_created_at_pk" PRIMARY KEY("id","created_at")
) PARTITION BY RANGE ("created_at");
--> statement-breakpoint
-- Hand-written: drizzle-kit does not model partitioning. Monthly partitions
-- (inference_logs_yYYYYmMM) are created ahead by the inference module's partition job;
-- the DEFAULT partition catches any row outside them so an insert never fails for lack of one.
CREATE TABLE "inference_logs_default" PARTITION OF "inference_logs" DEFAULT;
--> statement-breakpoint
CREATE INDEX "inference_logs_customer_created_idx" ON "inference_logs" USING btree ("customer_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "inference_logs_customer_robot_idx" ON "inference_logs" USING btree ("customer_id","robot_id","created_at" DESC NULLS LAST) WHERE "inference_logs"."robot_id" is not null;