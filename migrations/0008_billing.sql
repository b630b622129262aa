CREATE TABLE "billing_meter_reports" (
	"customer_id" uuid NOT NULL,
	"period" date NOT NULL,
	"meter" text NOT NULL,
	"reported" bigint DEFAULT 0 NOT NULL,
	"pending_to" bigint,
	"pending_identifier" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "billing_meter_reports_customer_id_period_meter_pk" PRIMARY KEY("customer_id","period","meter")
);
--> statement-breakpoint
CREATE TABLE "billing_outbox" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"kind" text NOT NULL,
	"stripe_customer_id" text,
	"stripe_subscription_id" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"done_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "billing_usage_alerts" (
	"customer_id" uuid NOT NULL,
	"period" date NOT NULL,
	"meter" text NOT NULL,
	"threshold" integer NOT NULL,
	"sent_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "billing_usage_alerts_customer_id_period_meter_threshold_pk" PRIMARY KEY("customer_id","period","meter","threshold")
);
--> statement-breakpoint
CREATE TABLE "stripe_events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text NOT NULL,
	"customer_id" uuid
);
--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "stripe_price_id" text;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "current_period_start" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "current_period_end" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "cancel_at_period_end" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "grace_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "subscription_synced_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "overage_enabled" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "overage_cap_requests" integer;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "overage_cap_stream_seconds" integer;--> statement-breakpoint
ALTER TABLE "billing_meter_reports" ADD CONSTRAINT "billing_meter_reports_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "billing_usage_alerts" ADD CONSTRAINT "billing_usage_alerts_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "billing_outbox_due_idx" ON "billing_outbox" USING btree ("done_at","next_attempt_at");--> statement-breakpoint
CREATE INDEX "stripe_events_received_at_idx" ON "stripe_events" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "stripe_events_customer_idx" ON "stripe_events" USING btree ("customer_id");--> statement-breakpoint
CREATE INDEX "customers_grace_until_idx" ON "customers" USING btree ("grace_until");