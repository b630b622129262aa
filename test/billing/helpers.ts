import { billingContexts } from "../../src/modules/billing/billing.module.ts";
import { buildTestApp, type TestAppOptions, type TestContext } from "../helpers/app.ts";
import {
  FAKE_PRICE_ENTERPRISE,
  FAKE_PRICE_PRO,
  FAKE_PRICE_PRO_YEARLY,
  type StripeFake,
  startStripeFake,
} from "../helpers/stripe-fake.ts";

export const PUBLIC_BASE = "https://app.example.test";

/** The environment that points billing at a Stripe fake. */
export function billingEnv(fake: StripeFake, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PUBLIC_BASE_URL: PUBLIC_BASE,
    STRIPE_SECRET_KEY: fake.secretKey,
    STRIPE_WEBHOOK_SECRET: fake.webhookSecret,
    STRIPE_PRICE_PRO: `${FAKE_PRICE_PRO},${FAKE_PRICE_PRO_YEARLY}`,
    STRIPE_PRICE_ENTERPRISE: FAKE_PRICE_ENTERPRISE,
    STRIPE_API_BASE: fake.url,
    STRIPE_MAX_NETWORK_RETRIES: "0",
    STRIPE_TIMEOUT_MS: "2000",
    // The job runs when a test asks (runJobs), not on a timer.
    BILLING_JOB_INTERVAL_MS: "3600000",
    MODELS_WARM_UP: "false",
    ...extra,
  };
}

export interface BillingTestContext extends TestContext {
  readonly fake: StripeFake;
  /** Runs every billing job task once (grace expiry, outbox, overage, alerts). */
  runJobs(): Promise<void>;
}

/** An app with billing on, talking to a fresh Stripe fake on loopback. */
export async function buildBillingApp(
  options: TestAppOptions & { fakeNow?: () => number } = {},
): Promise<BillingTestContext> {
  const fake = await startStripeFake(options.fakeNow === undefined ? {} : { now: options.fakeNow });
  const ctx = await buildTestApp({ ...options, env: billingEnv(fake, options.env) });
  return {
    ...ctx,
    fake,
    async runJobs() {
      const b = billingContexts.get(ctx.app.platform);
      if (b === undefined) throw new Error("billing module not registered");
      await b.jobs.runOnce();
    },
    async close() {
      await ctx.close();
      await fake.close();
    },
  };
}
