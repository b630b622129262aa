import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import {
  CheckoutBody,
  CheckoutSchema,
  InvoiceListSchema,
  InvoicesQuery,
  PortalBody,
  PortalQuery,
  PortalSchema,
  SubscriptionSchema,
} from "./billing.schemas.ts";
import type { BillingService } from "./billing.service.ts";

/** A session (JWT) or an API key, in any accepted header. */
const SECURITY: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const DISABLED =
  " Without `STRIPE_SECRET_KEY` on the server every billing route answers 503 `billing_disabled`; a Stripe outage is 503 `billing_unavailable`.";

/**
 * The customer's billing routes: the account owner (JWT) or a key with the `admin` scope, for
 * its own customer only (no id in any path: the principal names the customer). Members are 403.
 */
export function billingRoutes(service: BillingService | null): FastifyPluginAsyncTypebox<ModuleOptions> {
  return async (app, { platform }) => {
    const owner = platform.auth.require({ scopes: ["admin"] });
    const tags = ["billing"];
    const live = (): BillingService => {
      if (service === null) throw errors.billingDisabled();
      return service;
    };
    const customerOf = (r: { principal: { customerId: string } | null }) =>
      (r.principal as { customerId: string }).customerId;

    app.post(
      "/v1/billing/checkout",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Start a subscription checkout",
          description:
            "Creates (once) the Stripe customer and a Stripe Checkout Session in subscription mode for the tier's " +
            "configured price, and returns its URL: redirect the browser there. The tier changes when Stripe confirms " +
            "payment (webhook), not here. A customer that already has a subscription gets 409 `subscription_exists` " +
            "(use the portal). Send an `Idempotency-Key` header to make a retried call return the same session." +
            DISABLED,
          security: SECURITY,
          body: CheckoutBody,
          response: { 200: CheckoutSchema },
        },
      },
      async (request) => {
        const header = request.headers["idempotency-key"];
        const key = typeof header === "string" && header.length > 0 && header.length <= 255 ? header : undefined;
        return live().checkout(
          customerOf(request),
          {
            tier: request.body.tier,
            ...(request.body.success_url === undefined ? {} : { successUrl: request.body.success_url }),
            ...(request.body.cancel_url === undefined ? {} : { cancelUrl: request.body.cancel_url }),
          },
          key,
        );
      },
    );

    const portalDescription =
      "A Stripe Billing Portal session for the customer (change plan, payment method, cancel, invoices); redirect the " +
      "browser to `url`. Creates the Stripe customer first when there is none." +
      DISABLED;
    app.get(
      "/v1/billing/portal",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Open the billing portal",
          description: portalDescription,
          security: SECURITY,
          querystring: PortalQuery,
          response: { 200: PortalSchema },
        },
      },
      async (request) => live().portal(customerOf(request), request.query.return_url),
    );
    app.post(
      "/v1/billing/portal",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Open the billing portal (POST)",
          description: portalDescription,
          security: SECURITY,
          body: PortalBody,
          response: { 200: PortalSchema },
        },
      },
      async (request) => live().portal(customerOf(request), request.body?.return_url),
    );

    app.get(
      "/v1/billing/subscription",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Subscription, usage and last invoice",
          description:
            "Tier and subscription status as Stripe last reported them (kept current by the webhook), the billing " +
            "period, the price, the grace deadline when past due, this quota period's usage against the included " +
            "quota (requests and stream robot-seconds), overage so far, and the last invoice." +
            DISABLED,
          security: SECURITY,
          response: { 200: SubscriptionSchema },
        },
      },
      async (request) => live().subscription(customerOf(request)),
    );

    app.get(
      "/v1/billing/invoices",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "List invoices",
          description:
            "The customer's Stripe invoices, newest first, `limit` per page (default 20, at most 100); pass " +
            "`next_cursor` as `starting_after` for the next page. Served from a short cache (BILLING_INVOICE_CACHE_MS)." +
            DISABLED,
          security: SECURITY,
          querystring: InvoicesQuery,
          response: { 200: InvoiceListSchema },
        },
      },
      async (request) => live().invoices(customerOf(request), request.query.limit ?? 20, request.query.starting_after),
    );
  };
}
