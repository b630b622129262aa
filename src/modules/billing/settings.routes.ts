import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { auditActor } from "../../platform/audit.ts";
import { errors } from "../../platform/errors.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { SettingsPatch, SettingsSchema } from "./settings.schemas.ts";
import type { SettingsService } from "./settings.service.ts";

const SECURITY: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const DISABLED = " Without `STRIPE_SECRET_KEY` on the server it answers 503 `billing_disabled`.";

/** `GET/PATCH /v1/billing/settings` (owner session or `admin` key, own customer). docs/billing.md, "Overage". */
export function settingsRoutes(service: SettingsService | null): FastifyPluginAsyncTypebox<ModuleOptions> {
  return async (app, { platform }) => {
    const owner = platform.auth.require({ scopes: ["admin"] });
    const tags = ["billing"];
    const live = (): SettingsService => {
      if (service === null) throw errors.billingDisabled();
      return service;
    };
    const customerOf = (r: { principal: { customerId: string } | null }) =>
      (r.principal as { customerId: string }).customerId;

    app.get(
      "/v1/billing/settings",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Billing settings (metered overage)",
          description:
            "Whether metered overage is on, its caps, whether the customer may turn it on, and what the plan " +
            "includes per month." +
            DISABLED,
          security: SECURITY,
          response: { 200: SettingsSchema },
        },
      },
      async (request) => live().get(customerOf(request)),
    );

    app.patch(
      "/v1/billing/settings",
      {
        onRequest: owner,
        schema: {
          tags,
          summary: "Change billing settings (metered overage)",
          description:
            "Turns metered overage on or off and sets its caps. With overage on, requests past the monthly " +
            "included quota are served (and billed per request through Stripe Billing Meters) up to " +
            "`monthly_overage_cap`, and stream time past the monthly allowance up to `stream_overage_cap_seconds`; " +
            "the limiter refuses beyond, and responses in overage carry a `Billing-Overage` header. Only a `pro` " +
            "customer with a Stripe subscription may turn it on (else 409 `overage_not_available`); turning it on " +
            "needs a request cap (else 422 `validation_failed`). Takes effect on every instance within a second." +
            DISABLED,
          security: SECURITY,
          body: SettingsPatch,
          response: { 200: SettingsSchema },
        },
      },
      async (request) => live().update(customerOf(request), request.body, auditActor(request)),
    );
  };
}
