import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { eq } from "drizzle-orm";
import { Counter } from "prom-client";
import { apiKeys, usageCounters } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { ApiKeyStrategy } from "./api-key-strategy.ts";
import { ApiKeysRepo } from "./api-keys.repo.ts";
import { apiKeysRoutes } from "./api-keys.routes.ts";
import { ApiKeysService } from "./api-keys.service.ts";
import { bootstrapDemo } from "./bootstrap.ts";
import { KeyCache } from "./key-cache.ts";
import { createKeyThrottle } from "./key-throttle.ts";
import { LastUsedTracker } from "./last-used.ts";

/** Wires the api-keys module: verification strategy, batched last_used_at, routes, first-run demo. */
export const apiKeysModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const { config, metrics } = platform;
  const repo = new ApiKeysRepo(platform.database.db);
  const lastUsed = new LastUsedTracker(repo);
  const refreshErrors = new Counter({
    name: "vla_api_key_cache_refresh_failures_total",
    help: "Background refreshes of cached API keys that failed (the stale entry kept serving).",
    registers: [metrics.registry],
  });
  let service: ApiKeysService | undefined;
  const cache = new KeyCache({
    freshMs: config.apiKeys.cacheFreshMs,
    staleMs: config.apiKeys.cacheStaleMs,
    negativeMs: config.apiKeys.negativeCacheMs,
    now: platform.now,
    load: (hash) => (service as ApiKeysService).load(hash),
    onRefreshError: () => refreshErrors.inc(),
  });
  service = new ApiKeysService({
    repo,
    cache,
    lastUsed,
    customerLimits: platform.limits.customerLimits,
    invalidation: platform.invalidation,
    models: {
      // A getter: a registry reload may change the default model.
      get defaultModel() {
        return platform.engine.defaultModel;
      },
      // As the key will use them: its customer's, never a superuser's (docs/models.md, "Access"),
      // with the customer's own registered models ("Bring your own endpoint"); another customer's
      // model is as unknown as an id that does not exist.
      modelIds: (customerId) => {
        const viewer = { customerId, isSuperuser: false };
        return [...new Set([...platform.engine.modelIds(viewer), ...platform.engine.customerModelIds(customerId)])];
      },
      unnormKeysOf: (id, customerId) => {
        const viewer = { customerId, isSuperuser: false };
        // Resolved as a request of the key resolves it: its customer's own model of that id first.
        return platform.engine.serves(id, viewer) ? platform.engine.describe(id, viewer).unnorm_keys : undefined;
      },
    },
    now: platform.now,
    maxKeysPerCustomer: config.apiKeys.maxKeysPerCustomer,
  });
  // Shared by every instance through Redis when configured (docs/api-keys.md#the-invalid-key-throttle).
  const throttle = createKeyThrottle(platform.redis, config.apiKeys.invalidAttemptsPerMinute, config.auth.secretKey);
  const strategy = new ApiKeyStrategy(service, throttle, metrics);
  platform.auth.useApiKeys(strategy);

  // Account export: key metadata, never the hash (the plaintext is never stored at all).
  platform.exports.register(
    tableSection({
      name: "api_keys",
      file: "api_keys.ndjson",
      table: apiKeys,
      customer: apiKeys.customerId,
      key: apiKeys.id,
      omit: ["keyHash"],
      batchRows: platform.config.exports.batchRows,
    }),
  );

  // Account deletion (GDPR): the customer's keys and usage go in the erasure transaction, and
  // every instance drops its cached keys once it has committed.
  platform.deletion.register({
    name: "api-keys",
    async deleteCustomer({ tx, customerId }) {
      const keys = await tx.delete(apiKeys).where(eq(apiKeys.customerId, customerId)).returning({ id: apiKeys.id });
      const usage = await tx
        .delete(usageCounters)
        .where(eq(usageCounters.customerId, customerId))
        .returning({ month: usageCounters.month });
      return { api_keys: keys.length, usage_counters: usage.length };
    },
    async afterCommit({ customerId, wholeCustomer }) {
      if (wholeCustomer) await platform.limits.customerChanged(customerId);
    },
  });

  const flushFailures = new Counter({
    name: "vla_api_key_last_used_flush_failures_total",
    help: "Failed batch writes of last_used_at (retried at the next flush).",
    registers: [metrics.registry],
  });
  const timer = setInterval(() => {
    lastUsed.flush().catch(() => flushFailures.inc());
  }, config.apiKeys.lastUsedFlushMs);
  timer.unref();
  platform.lifecycle.onFlush("api key last_used_at", async () => {
    clearInterval(timer);
    strategy.close();
    await lastUsed.flush();
  });

  await app.register(apiKeysRoutes(service), { platform });
  const served = {
    has: (model: string, unnormKey: string) =>
      platform.engine.modelIds().includes(model) && platform.engine.statistics(model).entries.has(unnormKey),
  };
  platform.notices.push(...(await bootstrapDemo(config, platform.database, repo, served)));
};
