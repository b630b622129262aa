import type { ModulePlugin } from "../platform/module.ts";
import { accountExportModule } from "./account-export/export.module.ts";
import { adminCustomersModule } from "./admin/customers.module.ts";
import { adminStatsModule } from "./admin/stats.module.ts";
import { suspensionModule } from "./admin/suspension.module.ts";
import { analyticsModule } from "./analytics/analytics.module.ts";
import { apiKeysModule } from "./api-keys/api-keys.module.ts";
import { auditModule } from "./audit/audit.module.ts";
import { authRoutes } from "./auth/auth.routes.ts";
import { billingModule } from "./billing/billing.module.ts";
import { consentModule } from "./consent/consent.module.ts";
import { contextModule } from "./context/context.module.ts";
import { experimentsModule } from "./experiments/experiments.module.ts";
import { feedbackModule } from "./feedback/feedback.module.ts";
import { inferenceModule } from "./inference/inference.module.ts";
import { customerModelsModule } from "./models/customer-models.module.ts";
import { modelsRoutes } from "./models/models.routes.ts";
import { modelsAdminModule } from "./models/models-admin.routes.ts";
import { opsRoutes } from "./ops/ops.routes.ts";
import { usageRoutes } from "./rate-limit/usage.routes.ts";
import { retentionModule } from "./retention/retention.module.ts";
import { safetyModule } from "./safety/safety.module.ts";
import { streamingModule } from "./streaming/streaming.module.ts";

/** Every feature module, registered in this order by buildApp. */
export const modules: readonly ModulePlugin[] = [
  opsRoutes,
  authRoutes,
  // Early: its profile and members sections open the archive; the other modules add theirs.
  accountExportModule,
  apiKeysModule,
  usageRoutes,
  billingModule,
  modelsRoutes,
  modelsAdminModule,
  // Loads every customer-registered model into the engine before inference routes serve.
  customerModelsModule,
  safetyModule,
  consentModule,
  // Before inference: the runner records context_metadata and images through it.
  contextModule,
  // Before inference: the runner routes requests through its experiments.
  experimentsModule,
  inferenceModule,
  feedbackModule,
  streamingModule,
  analyticsModule,
  auditModule,
  retentionModule,
  // After safety and consent: its customer detail reads their services.
  adminCustomersModule,
  suspensionModule,
  // After safety (its emergency-stop registry) and analytics.
  adminStatsModule,
];
