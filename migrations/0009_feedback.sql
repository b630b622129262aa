CREATE TABLE "feedback" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"inference_id" uuid NOT NULL,
	"inference_created_at" timestamp with time zone NOT NULL,
	"robot_id" text,
	"model" text NOT NULL,
	"source" text,
	"api_key_id" uuid,
	"user_id" uuid,
	"type" text NOT NULL,
	"rating" smallint,
	"observed_issue" text,
	"failure_type" text,
	"severity" text,
	"comment" text,
	"description" text,
	"corrected_action" jsonb,
	"model_action" jsonb,
	"error_translation" real,
	"error_rotation" real,
	"error_gripper" real,
	"idempotency_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "feedback" ADD CONSTRAINT "feedback_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "feedback_customer_created_idx" ON "feedback" USING btree ("customer_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "feedback_customer_inference_idx" ON "feedback" USING btree ("customer_id","inference_id");--> statement-breakpoint
CREATE UNIQUE INDEX "feedback_customer_idempotency_key" ON "feedback" USING btree ("customer_id","idempotency_key") WHERE "feedback"."idempotency_key" is not null;