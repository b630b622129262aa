CREATE TABLE "account_exports" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"progress" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_by_user_id" uuid,
	"created_by_api_key_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"heartbeat_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	"file_path" text,
	"size_bytes" bigint,
	"error" text,
	"downloaded_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "account_exports" ADD CONSTRAINT "account_exports_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "account_exports_customer_created_idx" ON "account_exports" USING btree ("customer_id","created_at");--> statement-breakpoint
CREATE INDEX "account_exports_status_idx" ON "account_exports" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "account_exports_one_active_key" ON "account_exports" USING btree ("customer_id") WHERE "account_exports"."status" in ('queued', 'running');