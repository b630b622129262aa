import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { BatchWriter } from "../../platform/batch-writer.ts";
import { robotProfiles, safetyIncidents } from "../../platform/db/schema/index.ts";
import { tableSection } from "../../platform/exports.ts";
import type { ModuleOptions } from "../../platform/module.ts";
import type { Platform } from "../../platform/platform.ts";
import { createEstopRegistry } from "./estop.ts";
import type { IncidentRow } from "./incidents.ts";
import { createRobotStateStore } from "./robot-state-store.ts";
import { createSafetyMetrics } from "./safety.metrics.ts";
import { SafetyRepo } from "./safety.repo.ts";
import { safetyRoutes } from "./safety.routes.ts";
import { SafetyService } from "./safety.service.ts";

/** The app's safety service: the inference module hands it to the runner as its gate. */
export const safetyServices = new WeakMap<Platform, SafetyService>();
/** Test seam: the safety batch writers of an app (tests flush them instead of waiting). */
export const safetyWriters = new WeakMap<
  Platform,
  { readonly incidents: BatchWriter<IncidentRow>; readonly lastSeen: BatchWriter<SeenRow> }
>();

interface SeenRow {
  customerId: string;
  robotId: string;
  at: string;
}

/**
 * Safety: the gate every action passes (rules, OOD classifier, policy, emergency stops), robot
 * profiles and incidents (written by batch writers), their routes and the deletion hook.
 */
export const safetyModule: FastifyPluginAsyncTypebox<ModuleOptions> = async (app, { platform }) => {
  const config = platform.config.safety;
  const repo = new SafetyRepo(platform.database.db);
  const incidents = await platform.batchWriter<IncidentRow>("safety-incidents", {
    write: (rows) => repo.insertIncidents(rows),
  });
  const lastSeen = await platform.batchWriter<SeenRow>(
    "robots-last-seen",
    { write: (rows) => repo.touchLastSeen(rows) },
    { flushIntervalMs: 1_000 },
  );
  const redis = platform.redis.client === null ? undefined : platform.redis;
  const service = new SafetyService({
    repo,
    estops: createEstopRegistry(redis),
    states: createRobotStateStore(redis, { periods: config.previousActionPeriods, now: platform.now }),
    incidents,
    lastSeen,
    metrics: createSafetyMetrics(platform.metrics.registry),
    invalidation: platform.invalidation,
    statistics: (modelId) => platform.engine.statistics(modelId),
    ...config,
    now: platform.now,
  });
  platform.engine.onReload(() => service.forgetModels());
  safetyServices.set(platform, service);
  safetyWriters.set(platform, { incidents, lastSeen });

  const batchRows = platform.config.exports.batchRows;
  const incidentSection = tableSection({
    name: "safety_incidents",
    file: "safety_incidents.ndjson",
    table: safetyIncidents,
    customer: safetyIncidents.customerId,
    key: safetyIncidents.id,
    batchRows,
  });
  platform.exports.register({
    ...incidentSection,
    flush: () => incidents.flush(), // incidents still buffered belong in the export too
    async *rows(customerId, db) {
      yield* incidentSection.rows(customerId, db);
    },
  });
  platform.exports.register(
    tableSection({
      name: "robot_profiles",
      file: "robot_profiles.ndjson",
      table: robotProfiles,
      customer: robotProfiles.customerId,
      key: robotProfiles.robotId,
      batchRows,
    }),
  );

  platform.deletion.register({
    name: "safety",
    async deleteCustomer({ tx, customerId }) {
      return repo.deleteCustomer(tx, customerId);
    },
    async afterCommit({ customerId, wholeCustomer }) {
      if (!wholeCustomer) return;
      await service.forgetCustomer(customerId);
    },
  });

  await app.register(safetyRoutes, { platform, service, repo });
};
