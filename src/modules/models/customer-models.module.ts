import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { customerModels } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import { CustomerModelsRepo } from "./customer-models.repo.ts";
import { customerModelsRoutes } from "./customer-models.routes.ts";
import { CustomerModelsService } from "./customer-models.service.ts";

/** Invalidation topic: `<customer id>/<model id>` changed; every instance reloads that row. */
const TOPIC = "customer-model";
/** Invalidation topic: every model of `<customer id>` changed (its erasure); every instance reloads them all. */
const CUSTOMER_TOPIC = "customer-models-of";

/** The services per app (tests reach them). */
export const customerModelServices = new WeakMap<object, CustomerModelsService>();

/**
 * Bring-your-own model endpoints (docs/models.md): the routes, the engine kept in step with
 * customer_models on every instance (all rows at startup, one row per broadcast, all again after
 * Redis reconnects), the account export section and the erasure hook.
 */
export const customerModelsModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const config = platform.config.models.byom;
  const repo = new CustomerModelsRepo(platform.database.db);
  const service = new CustomerModelsService({
    repo,
    engine: platform.engine,
    egress: {
      policy: { allowHttp: config.allowHttp, allowedNetworks: config.allowedNetworks },
      resolver: platform.egressResolver,
    },
    maxModelsPerCustomer: config.maxModelsPerCustomer,
    publish: (customerId, id) => platform.invalidation.publish(TOPIC, `${customerId}/${id}`),
    publishCustomer: (customerId) => platform.invalidation.publish(CUSTOMER_TOPIC, customerId),
    log: app.log,
  });
  customerModelServices.set(platform, service);

  const failed = (e: unknown) => app.log.warn({ err: e }, "customer models: reload failed");
  platform.invalidation.on(TOPIC, (key) => {
    const [customerId, id] = key.split("/");
    if (customerId !== undefined && id !== undefined) service.sync(customerId, id).catch(failed);
  });
  platform.invalidation.on(CUSTOMER_TOPIC, (customerId) => {
    service.syncCustomer(customerId).catch(failed);
  });
  platform.invalidation.onReset(() => {
    service.loadAll().catch(failed);
  });
  await service.loadAll();

  platform.exports.register(
    tableSection({
      name: "customer_models",
      file: "customer_models.ndjson",
      table: customerModels,
      customer: customerModels.customerId,
      key: customerModels.id,
      batchRows: platform.config.exports.batchRows,
    }),
  );
  platform.deletion.register({
    name: "customer-models",
    async deleteCustomer({ tx, customerId }) {
      return { customer_models: await new CustomerModelsRepo(tx).deleteCustomer(customerId) };
    },
    async afterCommit({ customerId, wholeCustomer }) {
      if (wholeCustomer) await service.forgetCustomer(customerId);
    },
  });

  await app.register(customerModelsRoutes, { platform, service });
};
