CREATE TABLE "robot_profiles" (
	"customer_id" uuid NOT NULL,
	"robot_id" text NOT NULL,
	"profile" jsonb,
	"last_seen_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "robot_profiles_customer_robot_pk" PRIMARY KEY("customer_id","robot_id")
);
--> statement-breakpoint
CREATE TABLE "safety_incidents" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"robot_id" text NOT NULL,
	"inference_id" text,
	"violation_type" text NOT NULL,
	"severity" text NOT NULL,
	"action_taken" text NOT NULL,
	"measured" double precision,
	"limit_value" double precision,
	"step" integer DEFAULT 0 NOT NULL,
	"message" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "robot_profiles" ADD CONSTRAINT "robot_profiles_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "safety_incidents" ADD CONSTRAINT "safety_incidents_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "safety_incidents_customer_at_idx" ON "safety_incidents" USING btree ("customer_id","at");--> statement-breakpoint
CREATE INDEX "safety_incidents_customer_robot_at_idx" ON "safety_incidents" USING btree ("customer_id","robot_id","at");