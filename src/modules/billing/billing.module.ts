import { eq } from "drizzle-orm";
import { Counter } from "prom-client";
import { customers } from "../../platform/db/schema/index.ts";
import type { ExportSection } from "../../platform/exports.ts";
import type { ModuleOptions, ModulePlugin } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { BillingRepo } from "./billing.repo.ts";
import { billingRoutes } from "./billing.routes.ts";
import { BillingService, invoiceView } from "./billing.service.ts";
import type { BillingClient } from "./billing-client.ts";
import { BillingJobs } from "./jobs.ts";
import { registerOverage } from "./overage.module.ts";
import { createStripeBillingClient } from "./stripe-billing-client.ts";
import { installWebhook } from "./webhook.routes.ts";

/** What the parts of billing share (routes, webhook, jobs); one per app. */
export interface BillingContext {
  readonly platform: Platform;
  /** Null when billing is disabled (no STRIPE_SECRET_KEY). */
  readonly client: BillingClient | null;
  readonly repo: BillingRepo;
  readonly service: BillingService | null;
  readonly jobs: BillingJobs;
  /** Stripe calls that failed, by operation (customer-facing and background). */
  readonly stripeFailures: Counter<"operation">;
}

/** Test seam: the billing context of an app (tests run its jobs instead of waiting for the timer). */
export const billingContexts = new WeakMap<Platform, BillingContext>();

/**
 * Billing: Stripe subscriptions (checkout, portal, webhook-driven tier sync, dunning), invoices,
 * metered overage, and the erasure of Stripe data. docs/billing.md.
 */
export const billingModule: ModulePlugin = async (app, { platform }: ModuleOptions) => {
  const cfg = platform.config.billing;
  const log = app.log.child({ module: "billing" });
  const client = cfg.stripeSecretKey === undefined ? null : createStripeBillingClient(cfg);
  const repo = new BillingRepo(platform.database.db);
  const stripeFailures = new Counter({
    name: "vla_billing_stripe_failures_total",
    help: "Stripe API calls that failed (outage, timeout, refused or unusable answer), by operation.",
    labelNames: ["operation"],
    registers: [platform.metrics.registry],
  });
  const service =
    client === null
      ? null
      : new BillingService({
          client,
          repo,
          limits: platform.limits,
          now: platform.now,
          config: {
            publicBaseUrl: platform.config.http.publicBaseUrl,
            redirectOrigins: cfg.redirectOrigins,
            prices: cfg.prices,
            invoiceCacheMs: cfg.invoiceCacheMs,
          },
          onStripeFailure: (operation) => stripeFailures.inc({ operation }),
        });
  const jobs = new BillingJobs({
    intervalMs: cfg.jobIntervalMs,
    log,
    registry: platform.metrics.registry,
    jobs: platform.jobs,
  });
  const ctx: BillingContext = { platform, client, repo, service, jobs, stripeFailures };
  billingContexts.set(platform, ctx);

  if (client !== null)
    platform.exports.register(invoicesSection(client, () => stripeFailures.inc({ operation: "export_invoices" })));

  platform.health.register(
    "billing",
    async () =>
      client === null ? { status: "disabled", detail: "no STRIPE_SECRET_KEY" } : { status: "ok", detail: "stripe" },
    { critical: false },
  );

  await app.register(billingRoutes(service), { platform });
  await registerOverage(app, ctx, log);
  await installWebhook(app, ctx);

  app.addHook("onReady", async () => jobs.start());
  platform.lifecycle.onFlush("billing-jobs", () => jobs.stop());
};

/**
 * The account export's invoice list, read from Stripe page by page (100 a page). When Stripe
 * cannot be reached the file gets one `{"error": "billing_unavailable", ...}` line after the
 * invoices read so far: the rest of the export is still worth having.
 */
function invoicesSection(client: BillingClient, onFailure: () => void): ExportSection {
  return {
    name: "invoices",
    file: "invoices.ndjson",
    async *rows(customerId, db) {
      const [row] = await db
        .select({ stripeCustomerId: customers.stripeCustomerId })
        .from(customers)
        .where(eq(customers.id, customerId));
      const stripeCustomerId = row?.stripeCustomerId ?? null;
      if (stripeCustomerId === null) return;
      let startingAfter: string | undefined;
      for (;;) {
        let page: Awaited<ReturnType<BillingClient["listInvoices"]>>;
        try {
          page = await client.listInvoices({
            stripeCustomerId,
            limit: 100,
            ...(startingAfter === undefined ? {} : { startingAfter }),
          });
        } catch {
          onFailure();
          yield {
            error: "billing_unavailable",
            message: "The billing provider could not be reached; the invoice list is incomplete. Export again later.",
          };
          return;
        }
        for (const invoice of page.data) yield invoiceView(invoice);
        const last = page.data[page.data.length - 1];
        if (!page.hasMore || last === undefined) return;
        startingAfter = last.id;
      }
    },
  };
}
