CREATE TYPE "public"."consent_anonymization" AS ENUM('none', 'partial', 'full');--> statement-breakpoint
CREATE TYPE "public"."consent_tier" AS ENUM('none', 'basic', 'analytics', 'research');--> statement-breakpoint
CREATE TABLE "customer_data_consent" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"tier" "consent_tier" NOT NULL,
	"store_instructions" boolean NOT NULL,
	"store_images" boolean NOT NULL,
	"store_embeddings" boolean NOT NULL,
	"use_for_training" boolean NOT NULL,
	"anonymization" "consent_anonymization" DEFAULT 'none' NOT NULL,
	"retention_days" integer NOT NULL,
	"expires_at" timestamp with time zone,
	"granted_by_user_id" uuid,
	"granted_by_api_key_id" uuid,
	"granted_at" timestamp with time zone NOT NULL,
	"ip" text,
	"policy_version" text NOT NULL,
	"withdrawn" boolean DEFAULT false NOT NULL,
	CONSTRAINT "customer_data_consent_retention_days_check" CHECK ("customer_data_consent"."retention_days" between 1 and 3650),
	CONSTRAINT "customer_data_consent_version_check" CHECK ("customer_data_consent"."version" >= 1)
);
--> statement-breakpoint
ALTER TABLE "customer_data_consent" ADD CONSTRAINT "customer_data_consent_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "customer_data_consent_customer_version_key" ON "customer_data_consent" USING btree ("customer_id","version");