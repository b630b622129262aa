-- mrr_minor becomes a plain column written by the billing webhook with monthlyAmount(), the
-- function the revenue history uses (quantity and interval_count included). DROP EXPRESSION keeps
-- the values already stored; the next webhook or reconcile of each subscription rewrites them.
ALTER TABLE "customers" ALTER COLUMN "mrr_minor" DROP EXPRESSION;--> statement-breakpoint
ALTER TABLE "customers" ALTER COLUMN "mrr_minor" SET DEFAULT 0;
