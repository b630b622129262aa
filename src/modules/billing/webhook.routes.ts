import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Counter } from "prom-client";
import { Type } from "typebox";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import type { BillingRepo } from "./billing.repo.ts";
import type { BillingService } from "./billing.service.ts";
import type { BillingClient } from "./billing-client.ts";
import { graceTask } from "./grace.ts";
import type { BillingJobs } from "./jobs.ts";
import { WebhookService } from "./webhook.service.ts";

/** Stripe's events are a few KB; a megabyte leaves room and bounds what an unsigned caller can send. */
export const WEBHOOK_BODY_LIMIT = 1024 * 1024;

const WebhookAck = Type.Object(
  {
    received: Type.Literal(true),
    outcome: Type.Union(
      [
        Type.Literal("applied"),
        Type.Literal("duplicate"),
        Type.Literal("ignored"),
        Type.Literal("unknown_type"),
        Type.Literal("unknown_price"),
        Type.Literal("stale"),
      ],
      {
        description:
          "What the event did: `applied`; `duplicate` (already handled, nothing changed); `ignored` (not about a " +
          "customer of ours); `unknown_type`; `unknown_price` (tier left unchanged); `stale` (about a subscription " +
          "that is no longer the customer's current one; the current one was re-synced instead).",
      },
    ),
  },
  { examples: [{ received: true, outcome: "applied" }] },
);

/**
 * `POST /v1/billing/webhook`, Stripe's endpoint, in its own encapsulated plugin: here alone the
 * JSON parser keeps the raw bytes (the signature is over them), and the route has no auth hook
 * (the signature is the auth). Also registers the grace-expiry task. Returns the service (or null
 * when billing is disabled: the route then answers 503 billing_disabled).
 */
export async function installWebhook(
  app: Parameters<FastifyPluginAsyncTypebox<ModuleOptions>>[0],
  ctx: {
    readonly platform: Platform;
    readonly client: BillingClient | null;
    readonly repo: BillingRepo;
    readonly service: BillingService | null;
    readonly jobs: BillingJobs;
  },
): Promise<WebhookService | null> {
  const { platform, client, repo } = ctx;
  const registers = [platform.metrics.registry];
  const events = new Counter({
    name: "vla_billing_webhook_events_total",
    help: "Verified Stripe webhook deliveries, by event type (handled types, else other) and outcome.",
    labelNames: ["type", "outcome"],
    registers,
  });
  const badSignatures = new Counter({
    name: "vla_billing_webhook_bad_signatures_total",
    help: "Webhook deliveries refused with 400 invalid_signature (missing, stale, tampered or wrong secret).",
    registers,
  });
  const unknownPrices = new Counter({
    name: "vla_billing_unknown_price_total",
    help: "Subscriptions synced whose price is not configured (STRIPE_PRICE_*): tier left unchanged.",
    registers,
  });
  const graceDowngrades = new Counter({
    name: "vla_billing_grace_downgrades_total",
    help: "Customers dropped to free because their grace period ended unpaid.",
    registers,
  });
  const cfg = platform.config.billing;
  const publicBaseUrl = platform.config.http.publicBaseUrl;
  const customerChanged = (id: string) => platform.limits.customerChanged(id);
  const sendEmail = (m: Parameters<typeof platform.email.enqueue>[0]) => platform.email.enqueue(m);
  const log = app.log.child({ module: "billing-webhook" });
  const service =
    client === null
      ? null
      : new WebhookService({
          client,
          repo,
          prices: cfg.prices,
          graceDays: cfg.graceDays,
          now: platform.now,
          publicBaseUrl,
          log,
          metrics: {
            event: (type, outcome) => events.inc({ type, outcome }),
            invalidSignature: () => badSignatures.inc(),
            unknownPrice: () => unknownPrices.inc(),
          },
          customerChanged,
          sendEmail,
          invoicesChanged: (stripeCustomerId) => ctx.service?.forgetInvoices(stripeCustomerId),
        });
  if (client !== null) {
    ctx.jobs.add(
      graceTask({
        db: repo.db,
        repo,
        now: platform.now,
        publicBaseUrl,
        customerChanged,
        sendEmail,
        onDowngrade: (n) => graceDowngrades.inc(n),
      }),
    );
  }
  await app.register(webhookRoutes(service));
  return service;
}

function webhookRoutes(service: WebhookService | null): FastifyPluginAsyncTypebox {
  return async (app) => {
    // Encapsulated: only this plugin's routes see the raw-bytes parser.
    app.removeContentTypeParser("application/json");
    app.addContentTypeParser(
      "application/json",
      { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT },
      (_request, body, done) => done(null, body),
    );
    app.post(
      "/v1/billing/webhook",
      {
        schema: {
          tags: ["billing"],
          summary: "Stripe webhook (Stripe only; not for API clients)",
          description:
            "Stripe's endpoint for subscription, invoice, checkout and customer events: configure it in the Stripe " +
            "dashboard, never call it yourself. No API credentials: the `Stripe-Signature` header, checked over the " +
            "raw body with the endpoint's signing secret (tolerance 300 s), is the authentication; a missing, " +
            "stale or non-matching signature is 400 `invalid_signature` and changes nothing. Deliveries may repeat " +
            "and arrive in any order: a repeated event id answers 200 `duplicate`, and subscription state is re-read " +
            "from Stripe rather than taken from the event. 503 `billing_unavailable` when Stripe could not be " +
            "reached while handling (nothing recorded; Stripe retries), 503 `billing_disabled` without " +
            '`STRIPE_SECRET_KEY`. docs/billing.md, "Webhook and state machine".',
          // No API credentials: Stripe's signature is the authentication.
          security: [],
          response: { 200: WebhookAck },
        },
      },
      async (request) => {
        if (service === null) throw errors.billingDisabled();
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const header = request.headers["stripe-signature"];
        const outcome = await service.receive(raw, typeof header === "string" ? header : undefined);
        return { received: true as const, outcome };
      },
    );
  };
}
