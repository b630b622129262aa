CREATE TABLE "context_metadata" (
	"inference_id" uuid PRIMARY KEY NOT NULL,
	"customer_id" uuid NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"image_sha256" text NOT NULL,
	"image_format" text NOT NULL,
	"image_bytes" integer NOT NULL,
	"width" integer NOT NULL,
	"height" integer NOT NULL,
	"embedding" real[],
	"embedding_kind" text,
	"image_key" text
);
--> statement-breakpoint
CREATE INDEX "context_metadata_customer_created_idx" ON "context_metadata" USING btree ("customer_id","created_at");--> statement-breakpoint
CREATE INDEX "context_metadata_customer_image_key_idx" ON "context_metadata" USING btree ("customer_id","image_key") WHERE "context_metadata"."image_key" is not null;