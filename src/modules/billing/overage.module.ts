import type { FastifyInstance } from "fastify";
import type { Counter } from "prom-client";
import type { Platform } from "../../platform/platform.ts";
import { UsageAlerts } from "./alerts.ts";
import type { BillingRepo } from "./billing.repo.ts";
import type { BillingClient } from "./billing-client.ts";
import type { BillingJobs } from "./jobs.ts";
import { billingDeletionHook, StripeOutbox } from "./outbox.ts";
import { OverageReporter } from "./overage.ts";
import { settingsRoutes } from "./settings.routes.ts";
import { SettingsService } from "./settings.service.ts";

interface Logger {
  warn(obj: object, msg: string): void;
}

/** The parts of billing.module.ts's BillingContext this uses (not imported: no import cycle). */
interface OverageHost {
  readonly platform: Platform;
  readonly client: BillingClient | null;
  readonly repo: BillingRepo;
  readonly jobs: BillingJobs;
  readonly stripeFailures: Counter<"operation">;
}

/** Test seam: an app's overage reporter and Stripe outbox (null with billing disabled). */
export const overageParts = new WeakMap<
  Platform,
  { readonly reporter: OverageReporter | null; readonly outbox: StripeOutbox | null }
>();

/**
 * Metered overage, quota alerts and the erasure of Stripe data: the settings routes, three
 * billing job tasks (outbox, overage reports, alerts) and the `billing` deletion hook.
 */
export async function registerOverage(app: FastifyInstance, ctx: OverageHost, log: Logger): Promise<void> {
  const { platform, client, repo } = ctx;
  const registry = platform.metrics.registry;
  const onStripeFailure = (operation: string) => ctx.stripeFailures.inc({ operation });
  const settings = client === null ? null : new SettingsService({ repo, limits: platform.limits, now: platform.now });
  await app.register(settingsRoutes(settings), { platform });

  let outbox: StripeOutbox | null = null;
  let reporter: OverageReporter | null = null;
  if (client !== null) {
    const db = platform.database.db;
    outbox = new StripeOutbox({ db, client, now: platform.now, log, registry, onStripeFailure });
    reporter = new OverageReporter({
      db,
      client,
      now: platform.now,
      log,
      registry,
      onStripeFailure,
      eventNames: {
        requests: platform.config.billing.meterEventRequests,
        stream_seconds: platform.config.billing.meterEventStreamSeconds,
      },
    });
    ctx.jobs.add(outbox);
    ctx.jobs.add(reporter);
    ctx.jobs.add(
      new UsageAlerts({
        db,
        repo,
        now: platform.now,
        email: platform.email,
        billingUrl: `${platform.config.http.publicBaseUrl}/billing`,
      }),
    );
  }
  const liveOutbox = outbox;
  platform.deletion.register(billingDeletionHook({ now: platform.now, outbox: () => liveOutbox }));
  overageParts.set(platform, { reporter, outbox });
}
