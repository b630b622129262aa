CREATE TABLE "subscription_changes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"source" text NOT NULL,
	"stripe_subscription_id" text,
	"stripe_price_id" text,
	"status" text,
	"price_tier" text,
	"unit_amount" bigint,
	"quantity" integer DEFAULT 1 NOT NULL,
	"interval" text,
	"interval_count" integer DEFAULT 1 NOT NULL,
	"mrr_before" bigint NOT NULL,
	"currency_before" text,
	"mrr_after" bigint NOT NULL,
	"currency_after" text
);
--> statement-breakpoint
ALTER TABLE "subscription_changes" ADD CONSTRAINT "subscription_changes_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "subscription_changes_customer_at_idx" ON "subscription_changes" USING btree ("customer_id","at");--> statement-breakpoint
CREATE INDEX "subscription_changes_at_idx" ON "subscription_changes" USING btree ("at");--> statement-breakpoint
CREATE INDEX "robot_performance_metrics_day_customer_idx" ON "robot_performance_metrics" USING btree ("day","customer_id");--> statement-breakpoint
CREATE INDEX "usage_hourly_metrics_hour_customer_idx" ON "usage_hourly_metrics" USING btree ("hour","customer_id");--> statement-breakpoint
CREATE INDEX "safety_incidents_at_id_idx" ON "safety_incidents" USING btree ("at","id");--> statement-breakpoint
CREATE INDEX "usage_counters_month_requests_idx" ON "usage_counters" USING btree ("month","requests","customer_id");