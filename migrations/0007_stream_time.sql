ALTER TABLE "customers" ADD COLUMN "stream_seconds_per_day" integer;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "stream_seconds_per_month" integer;--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "stream_max_fps" integer;--> statement-breakpoint
ALTER TABLE "usage_counters" ADD COLUMN "stream_ms" bigint DEFAULT 0 NOT NULL;