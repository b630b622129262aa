import type { Config } from "../../config.ts";
import type { Database } from "../../platform/db/client.ts";
import { Mailer, outboxTransport, smtpTransport } from "../../platform/email.ts";
import { InvalidationBus } from "../../platform/invalidation.ts";
import { createRedis } from "../../platform/redis.ts";
import { CUSTOMER_TOPIC } from "../rate-limit/rate-limits.ts";
import { BillingRepo } from "./billing.repo.ts";
import { createStripeBillingClient } from "./stripe-billing-client.ts";
import { type ReconcileReport, WebhookService } from "./webhook.service.ts";

interface Out {
  write(s: string): void;
}

/**
 * `npm run cli -- billing-reconcile [--dry-run] [--customer <id>]`: compares every customer
 * linked to Stripe (or one) with Stripe's subscriptions and applies the current one through the
 * webhook's code path (same lock, same state machine). Running servers reload a changed tier
 * through Redis; emails a transition calls for (recovered, canceled, downgraded) are sent.
 * Prints one line per customer whose copy was off; exit code 0, or 1 when Stripe failed.
 */
export async function billingReconcile(
  config: Config,
  database: Database,
  options: { dryRun: boolean; customerId?: string | undefined },
  out: Out,
): Promise<number> {
  if (config.billing.stripeSecretKey === undefined) {
    out.write("billing-reconcile: billing is disabled (no STRIPE_SECRET_KEY); nothing to reconcile\n");
    return 2;
  }
  if (
    options.customerId !== undefined &&
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(options.customerId)
  ) {
    out.write("billing-reconcile: --customer must be a customer id (uuid)\n");
    return 2;
  }
  const quiet = { info() {}, warn() {}, error() {} };
  const log = {
    info() {},
    warn(obj: object, msg: string) {
      out.write(`warning: ${msg} ${JSON.stringify(obj)}\n`);
    },
    error(obj: object, msg: string) {
      out.write(`error: ${msg} ${JSON.stringify(obj)}\n`);
    },
  };
  const redis = createRedis({ ...config.redis, log: quiet });
  if (redis.client !== null) await redis.ping(config.redis.commandTimeoutMs).catch(() => {});
  const bus = new InvalidationBus(redis);
  const mailer = new Mailer({
    transport:
      config.email.smtpUrl === undefined
        ? outboxTransport(config.email.outboxDir, quiet)
        : smtpTransport(config.email.smtpUrl),
    from: config.email.from,
    log,
  });
  const service = new WebhookService({
    client: createStripeBillingClient(config.billing),
    repo: new BillingRepo(database.db),
    prices: config.billing.prices,
    graceDays: config.billing.graceDays,
    now: Date.now,
    publicBaseUrl: config.http.publicBaseUrl,
    log,
    metrics: { event() {}, invalidSignature() {}, unknownPrice() {} },
    customerChanged: (id) => bus.publish(CUSTOMER_TOPIC, id),
    sendEmail: (m) => mailer.enqueue(m),
  });
  try {
    const reports: ReconcileReport[] =
      options.customerId === undefined
        ? await service.reconcileAll({ dryRun: options.dryRun })
        : [await service.reconcile(options.customerId, { dryRun: options.dryRun })];
    const changed = reports.filter((r) => r.changed);
    for (const r of changed) {
      out.write(`${r.customerId}: ${JSON.stringify(r.before)} -> ${JSON.stringify(r.after)}\n`);
    }
    out.write(
      `billing-reconcile: ${reports.length} customer(s) checked, ${changed.length} ${options.dryRun ? "would change (dry run, nothing written)" : "corrected"}\n`,
    );
    return 0;
  } catch (e) {
    out.write(`billing-reconcile: stopped: ${e instanceof Error ? e.message : String(e)}; run again\n`);
    return 1;
  } finally {
    await mailer.drain(10_000);
    mailer.close();
    await redis.close();
  }
}
