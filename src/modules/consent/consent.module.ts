import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { customerDataConsent } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { ConsentRepo } from "./consent.repo.ts";
import { consentRoutes } from "./consent.routes.ts";
import { ConsentService } from "./consent.service.ts";

/** The app's consent service, for the inference runner (registered after this module). */
export const consentServices = new WeakMap<Platform, ConsentService>();

/**
 * Data consent (docs/privacy.md): versioned consent records, their routes, the per-customer
 * cache the inference path reads, and the deletion hook (the versions go with the customer;
 * audit_log keeps that they were changed).
 */
export const consentModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const config = platform.config.consent;
  const service = new ConsentService({
    repo: new ConsentRepo(platform.database.db),
    invalidation: platform.invalidation,
    now: platform.now,
    defaultTier: config.defaultTier,
    cacheFreshMs: config.cacheFreshMs,
    onRefreshError: (err) => app.log.warn({ err }, "consent cache refresh failed; serving the cached version"),
  });
  consentServices.set(platform, service);

  platform.deletion.register({
    name: "consent",
    async deleteCustomer({ tx, customerId }) {
      return { customer_data_consent: await new ConsentRepo(tx).deleteCustomer(customerId) };
    },
  });

  // The customer's consent history, every version, oldest first (GDPR access: what it allowed when).
  platform.exports.register(
    tableSection({
      name: "consent_history",
      file: "consent_history.ndjson",
      table: customerDataConsent,
      customer: customerDataConsent.customerId,
      key: customerDataConsent.version,
      batchRows: platform.config.exports.batchRows,
    }),
  );

  await app.register(consentRoutes, { platform, service });
};
