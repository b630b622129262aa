ALTER TABLE "api_keys" ADD COLUMN "robot_id" text;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "model" text;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "unnorm_key" text;