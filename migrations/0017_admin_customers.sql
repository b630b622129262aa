CREATE TABLE "customer_admin_metrics" (
	"customer_id" uuid PRIMARY KEY NOT NULL,
	"requests_30d" bigint DEFAULT 0 NOT NULL,
	"refreshed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "subscription_unit_amount" bigint;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "subscription_currency" text;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "subscription_interval" text;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "mrr_minor" bigint GENERATED ALWAYS AS (case when subscription_status in ('active', 'past_due') and subscription_unit_amount is not null then round(subscription_unit_amount * case subscription_interval when 'month' then 1.0 when 'year' then 1.0 / 12 when 'week' then 52.0 / 12 when 'day' then 365.0 / 12 else 0 end)::bigint else 0 end) STORED NOT NULL;--> statement-breakpoint
ALTER TABLE "customer_admin_metrics" ADD CONSTRAINT "customer_admin_metrics_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "customer_admin_metrics_requests_30d_idx" ON "customer_admin_metrics" USING btree ("requests_30d","customer_id");--> statement-breakpoint
CREATE INDEX "customers_mrr_minor_id_idx" ON "customers" USING btree ("mrr_minor","id");--> statement-breakpoint
CREATE INDEX "customers_created_at_id_idx" ON "customers" USING btree ("created_at","id");