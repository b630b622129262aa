/** Every table of the service. drizzle-kit reads this folder to generate migrations. */

export * from "./admin-customers.ts";
export * from "./analytics.ts";
export * from "./api-keys.ts";
export * from "./audit.ts";
export * from "./auth.ts";
export * from "./billing.ts";
export * from "./consent.ts";
export * from "./context-metadata.ts";
export * from "./customer-models.ts";
export * from "./customers.ts";
export * from "./experiments.ts";
export * from "./exports.ts";
export * from "./feedback.ts";
export * from "./inference-logs.ts";
export * from "./safety.ts";
export * from "./usage-counters.ts";
export * from "./users.ts";
