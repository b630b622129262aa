import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Platform } from "./platform.ts";

/** What `buildApp` passes to every feature module (and to test or benchmark plugins). */
export interface ModuleOptions {
  readonly platform: Platform;
}

/** A feature module: a Fastify plugin registered by `buildApp` with `{ platform }`. */
export type ModulePlugin = FastifyPluginAsyncTypebox<ModuleOptions>;
