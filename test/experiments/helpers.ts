import type { App } from "../../src/app.ts";
import { experimentServices, shadowWriters } from "../../src/modules/experiments/experiments.module.ts";
import { owner } from "../helpers/limits.ts";

export const split = (
  variants: { name?: string; model: string; weight: number }[],
  extra: Record<string, unknown> = {},
) => ({
  name: "ab",
  variants,
  ...extra,
});

export async function createExperiment(app: App, customerId: string, body: Record<string, unknown>) {
  return app.inject({ method: "POST", url: "/v1/experiments", headers: owner(customerId), payload: body });
}

/** Waits for the shadow queue to run everything queued, then writes its rows. */
export async function settleShadow(app: App): Promise<void> {
  await experimentServices.get(app.platform)?.queue.idle();
  await shadowWriters.get(app.platform)?.flush();
}

export async function metricValue(app: App, name: string, labels: Record<string, string>): Promise<number> {
  const m = await app.platform.metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}
