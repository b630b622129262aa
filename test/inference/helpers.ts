import type { App } from "../../src/app.ts";
import { contextWriters, imageUploadQueues } from "../../src/modules/context/context.module.ts";
import { inferenceLogWriters, inferenceRunners } from "../../src/modules/inference/inference.module.ts";
import { buildLimitsApp, type LimitsContext, seedCustomer, seedKey } from "../helpers/limits.ts";

export { jpeg, pattern, png } from "../engine/helpers.ts";

export interface InferenceTestContext extends LimitsContext {
  readonly key: string;
  readonly keyId: string;
  readonly customerId: string;
}

/** An app with one enterprise customer (no practical limits) and an inference key. */
export async function buildInferenceApp(env: Record<string, string> = {}): Promise<InferenceTestContext> {
  const ctx = await buildLimitsApp({ env: { MODELS_WARM_UP: "false", ...env } });
  const customerId = await seedCustomer(ctx.database, { tier: "enterprise", perMinute: 1_000_000 });
  const { key, id } = await seedKey(ctx.database, customerId);
  return Object.assign(ctx, { key, keyId: id, customerId });
}

/** Writes every buffered log row now (and context_metadata rows, once their image uploads settled). */
export async function flushLogs(app: App): Promise<void> {
  const w = inferenceLogWriters.get(app.platform);
  if (w === undefined) throw new Error("no inference log writer");
  await inferenceRunners.get(app.platform)?.drain(); // failure rows still waiting for a consent load
  await w.flush();
  await imageUploadQueues.get(app.platform)?.drained();
  await contextWriters.get(app.platform)?.flush();
}

export async function newKey(ctx: LimitsContext, seed: Parameters<typeof seedCustomer>[1] = {}) {
  const customerId = await seedCustomer(ctx.database, { tier: "enterprise", ...seed });
  const { key, id } = await seedKey(ctx.database, customerId);
  return { customerId, key, keyId: id };
}
