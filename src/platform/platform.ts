import type { Config } from "../config.ts";
import type { InferenceEngine } from "../modules/inference/inference.service.ts";
import type { RateLimits } from "../modules/rate-limit/rate-limits.ts";
import type { AuditLog } from "./audit.ts";
import type { AuthRegistry } from "./auth.ts";
import type { BatchSink, BatchWriter, BatchWriterTuning } from "./batch-writer.ts";
import type { Database } from "./db/client.ts";
import type { DeletionRegistry } from "./deletion.ts";
import type { Resolver } from "./egress.ts";
import type { Mailer } from "./email.ts";
import type { ExportRegistry } from "./exports.ts";
import type { HealthRegistry } from "./health.ts";
import type { InvalidationBus } from "./invalidation.ts";
import type { JobRegistry } from "./jobs.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { Metrics } from "./metrics.ts";
import type { ObjectStore } from "./object-store.ts";
import type { RedisHandle } from "./redis.ts";
import type { Tracing } from "./tracing.ts";

/**
 * Everything with a lifecycle that modules may use; built once per app by `buildApp`
 * (src/app.ts). The type lives here, below the modules, so modules depend on it without
 * importing app.ts (which imports them).
 */
export interface Platform {
  readonly config: Config;
  readonly database: Database;
  readonly redis: RedisHandle;
  readonly metrics: Metrics;
  readonly health: HealthRegistry;
  readonly lifecycle: Lifecycle;
  /** Credential strategies; modules register JWT and API-key verification here. */
  readonly auth: AuthRegistry;
  /**
   * A started batch writer for off-path bookkeeping, flushed on shutdown; see
   * platform/batch-writer.ts. Journals live under `<DATA_DIR>/journal`.
   */
  batchWriter<T>(name: string, sink: BatchSink<T>, options?: BatchWriterTuning): Promise<BatchWriter<T>>;
  /** Outgoing email, queued off the request path (SMTP, or the outbox folder in development). */
  readonly email: Mailer;
  /**
   * False when a CLI command built the app to reuse its registries: skip startup recovery of the
   * server's jobs and background timers (the account export module does).
   */
  readonly backgroundJobs: boolean;
  /** Account-deletion (GDPR erasure) hooks; every module that stores customer data plugs in here. */
  readonly deletion: DeletionRegistry;
  /** The append-only audit log (platform/audit.ts): changes of keys, profiles, tiers, settings; superuser reads. */
  readonly audit: AuditLog;
  /** Account-export (GDPR access/portability) sections; every module that stores customer data plugs in here. */
  readonly exports: ExportRegistry;
  /** Stored camera images (docs/architecture.md "Object store"): DATA_DIR/objects, or S3 when `S3_BUCKET` is set. */
  readonly objectStore: ObjectStore;
  /** Resolves customer model endpoints' host names for the SSRF guard (platform/egress.ts). */
  readonly egressResolver: Resolver;
  /** Lines a module wants printed once after the server starts listening (first-run hints). */
  readonly notices: string[];
  /** The model layer: registry, batching queues, backends (src/modules/inference). */
  readonly engine: InferenceEngine;
  /** Wall clock in ms; injectable so tests can walk limit windows without waiting. */
  readonly now: () => number;
  /** Cross-instance cache invalidation (Redis pub/sub when configured). */
  readonly invalidation: InvalidationBus;
  /** Rate limits and quotas: `meter()` preHandler and `consume()` for stream frames. */
  readonly limits: RateLimits;
  /** Background jobs report each run here (last run, next run, last error) for the deep health route. */
  readonly jobs: JobRegistry;
  /** OpenTelemetry tracing (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set). */
  readonly tracing: Tracing;
}

declare module "fastify" {
  interface FastifyInstance {
    platform: Platform;
  }
}
