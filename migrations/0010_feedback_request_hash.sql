ALTER TABLE "feedback" ALTER COLUMN "error_translation" SET DATA TYPE double precision;--> statement-breakpoint
ALTER TABLE "feedback" ALTER COLUMN "error_rotation" SET DATA TYPE double precision;--> statement-breakpoint
ALTER TABLE "feedback" ALTER COLUMN "error_gripper" SET DATA TYPE double precision;--> statement-breakpoint
ALTER TABLE "feedback" ADD COLUMN "request_hash" text;