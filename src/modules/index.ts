import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Platform } from "../app.ts";
import { apiKeysModule } from "./api-keys/api-keys.module.ts";
import { authRoutes } from "./auth/auth.routes.ts";
import { inferenceModule } from "./inference/inference.module.ts";
import { modelsRoutes } from "./models/models.routes.ts";
import { opsRoutes } from "./ops/ops.routes.ts";
import { usageRoutes } from "./rate-limit/usage.routes.ts";
import { safetyModule } from "./safety/safety.module.ts";
import { streamingModule } from "./streaming/streaming.module.ts";

export interface ModuleOptions {
  readonly platform: Platform;
}

/** Every feature module, registered in this order by buildApp. */
export const modules: readonly FastifyPluginAsyncTypebox<ModuleOptions>[] = [
  opsRoutes,
  authRoutes,
  apiKeysModule,
  usageRoutes,
  modelsRoutes,
  safetyModule,
  inferenceModule,
  streamingModule,
];
