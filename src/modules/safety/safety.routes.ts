import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Static } from "typebox";
import type { Principal } from "../../platform/auth.ts";
import { FIRST_INSTANT } from "../../platform/db/instants.ts";
import { errors } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import { safetyModelId } from "../inference/inference-runner.ts";
import { selectUnnormKey } from "../models/dataset-statistics.ts";
import type { EstopRecord } from "./estop.ts";
import { EMBODIMENT_DEFAULTS, resolveProfile, type SafetyProfile, UNNORM_KEY_EMBODIMENT } from "./profile.ts";
import {
  type IncidentPage,
  InvalidCursorError,
  type RobotRecord,
  type SafetyRepo,
  type StoredIncident,
} from "./safety.repo.ts";
import {
  ClearStopResponseSchema,
  type EffectiveProfileSchema,
  IncidentPageSchema,
  IncidentQuery,
  ProfileBodySchema,
  ProfileQuery,
  RobotIdParams,
  RobotListQuery,
  RobotListSchema,
  RobotProfileResponseSchema,
  SummaryQuery,
  SummarySchema,
} from "./safety.route-schemas.ts";
import type { SafetyService } from "./safety.service.ts";

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });

export interface SafetyRouteOptions {
  readonly platform: Platform;
  readonly service: SafetyService;
  readonly repo: SafetyRepo;
}

/** The profile as the response schema types it (the same data; TypeBox arrays are mutable). */
const apiProfile = (p: SafetyProfile) => p as unknown as Static<typeof EffectiveProfileSchema>;

/** What a profile view is for: the model as named, the name the safety gate judges it under, the key. */
interface ProfileTarget {
  readonly model?: string;
  readonly safetyModel?: string;
  readonly unnormKey?: string | undefined;
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

function stopOf(rec: EstopRecord | undefined) {
  if (rec === undefined) return null;
  return { at: rec.at, reason: rec.reason, inference_id: rec.inferenceId ?? null };
}

function embodimentOf(unnormKey: string | undefined): string {
  if (unnormKey === undefined) return "global";
  const name = UNNORM_KEY_EMBODIMENT[unnormKey] ?? unnormKey;
  return EMBODIMENT_DEFAULTS[name] === undefined ? "global" : name;
}

/**
 * Robots and their safety profiles, emergency-stop clearing, incidents and their summary.
 * Everything is scoped to the caller's customer: another customer's robot id is simply a robot
 * this customer has never configured (defaults, no incidents).
 */
export const safetyRoutes: FastifyPluginAsyncTypebox<SafetyRouteOptions> = async (app, { platform, service, repo }) => {
  const reader = platform.auth.require({ scopes: ["inference"] });
  const admin = platform.auth.require({ scopes: ["admin"] });
  const customerOf = (p: { customerId: string } | null) => {
    if (p === null) throw errors.unauthorized();
    return p.customerId;
  };

  app.get(
    "/v1/robots",
    {
      onRequest: reader,
      schema: {
        tags: ["safety"],
        summary: "Your robots",
        description:
          "Robots of your customer: those with a safety profile and those seen in inference requests (with their " +
          "last activity, updated at most once a second), plus any that are emergency-stopped. Ordered by robot_id; " +
          "`limit` (default 100, max 1000) and `after` (the last robot_id of the previous page) paginate.",
        security: SECURITY,
        querystring: RobotListQuery,
        response: { 200: RobotListSchema },
      },
    },
    async (request) => {
      const customerId = customerOf(request.principal);
      const { limit, after } = request.query;
      const [rows, stops] = await Promise.all([
        repo.listRobots(customerId, limit + 1, after),
        service.stoppedRobots(customerId),
      ]);
      const page = rows.slice(0, limit);
      const more = rows.length > limit;
      const byId = new Map<string, RobotRecord | undefined>(page.map((r) => [r.robotId, r]));
      // A stop recorded while the robot's row was not written yet still shows.
      const last = more ? page[page.length - 1]?.robotId : undefined;
      for (const id of stops.keys()) {
        if (byId.has(id) || (after !== undefined && id <= after) || (last !== undefined && id > last)) continue;
        byId.set(id, undefined);
      }
      const ids = [...byId.keys()].sort();
      return {
        data: ids.map((id) => {
          const r = byId.get(id);
          return {
            robot_id: id,
            has_custom_profile: r?.profile != null,
            last_seen_at: r === undefined ? null : iso(r.lastSeenAt),
            created_at: r === undefined ? null : iso(r.createdAt),
            updated_at: r === undefined ? null : iso(r.updatedAt),
            emergency_stop: stopOf(stops.get(id)),
          };
        }),
        next_after: more ? (last ?? null) : null,
      };
    },
  );

  /**
   * The model and unnorm key a profile view is for, resolved as an inference request resolves
   * them: `model` (else the default model) and `unnorm_key` (else the model's default; unknown
   * model or key: the same 400s as inference). With only `unnorm_key`: the default model if it
   * has that key, else the first model that does; a key no model has shows its embodiment's
   * defaults alone. Only the models the caller may use count (docs/models.md, "Access"): one
   * restricted to other customers, or another customer's own, is 404 unknown_model, as at
   * inference. The caller's own registered model of an id wins over a service model of that id,
   * and is judged under `safetyModelId` (`customer:<id>`), the name the gate uses.
   */
  const appliesTo = (viewer: Principal | null, model?: string, unnormKey?: string): ProfileTarget => {
    if (viewer === null) throw errors.unauthorized();
    const engine = platform.engine;
    const own = engine.customerModelIds(viewer.customerId);
    const ids = [...new Set([...engine.modelIds(viewer), ...own])];
    const target = (id: string, key: string | undefined): ProfileTarget => ({
      model: id,
      safetyModel: own.includes(id) ? safetyModelId({ model: id, owner: "customer" }) : id,
      unnormKey: key,
    });
    const defaultKey = (id: string) => engine.describe(id, viewer).default_unnorm_key ?? undefined;
    if (model !== undefined) {
      // describe answers 404 unknown_model (with the caller's ids) for a model it may not use.
      const key = defaultKey(model);
      return target(model, selectUnnormKey(engine.statistics(model, viewer), unnormKey, key).key);
    }
    if (!engine.serves(engine.defaultModel, viewer)) return unnormKey === undefined ? {} : { unnormKey };
    if (unnormKey === undefined) {
      const key = defaultKey(engine.defaultModel);
      return key === undefined ? {} : target(engine.defaultModel, key);
    }
    const withKey = [engine.defaultModel, ...ids].find((id) => engine.statistics(id, viewer).entries.has(unnormKey));
    return withKey === undefined ? { unnormKey } : target(withKey, unnormKey);
  };

  app.get(
    "/v1/robots/:robot_id/safety-profile",
    {
      onRequest: reader,
      schema: {
        tags: ["safety"],
        summary: "A robot's safety profile",
        description:
          "The effective profile (every field filled in) exactly as the safety gate applies it to a model's actions, " +
          "and the stored one (what was PUT, or null when the robot runs on defaults). Defaults depend on the model " +
          "and unnorm key: the key's embodiment, and the gripper range of the model's statistics for that key. " +
          "`model` and `unnorm_key` resolve as in inference (defaults: the default model, its default key); " +
          "`applies_to` says which were used. Also says whether the robot is emergency-stopped.",
        security: SECURITY,
        params: RobotIdParams,
        querystring: ProfileQuery,
        response: { 200: RobotProfileResponseSchema },
      },
    },
    async (request) => {
      const customerId = customerOf(request.principal);
      const { robot_id } = request.params;
      const target = appliesTo(request.principal, request.query.model, request.query.unnorm_key);
      // Through the service, as the gate reads them: same cache, same base, same resolution.
      const [stored, profile, stop] = await Promise.all([
        service.storedProfile(customerId, robot_id),
        service.profileFor(customerId, robot_id, target.unnormKey, target.safetyModel),
        service.stopOf(customerId, robot_id),
      ]);
      return {
        robot_id,
        source: stored === null ? ("default" as const) : ("custom" as const),
        defaults: embodimentOf(target.unnormKey),
        applies_to: { model: target.model ?? null, unnorm_key: target.unnormKey ?? null },
        profile: apiProfile(profile),
        stored,
        emergency_stop: stopOf(stop),
      };
    },
  );

  app.put(
    "/v1/robots/:robot_id/safety-profile",
    {
      onRequest: admin,
      bodyLimit: 64 * 1024,
      // The profile's own validator reports every problem at once as 422 invalid_safety_profile.
      attachValidation: true,
      schema: {
        tags: ["safety"],
        summary: "Set a robot's safety profile",
        description:
          "Replaces the robot's profile. Every field is optional; missing ones come from the default of the " +
          "model's embodiment (per request's unnorm key), else the global default. Validated: finite numbers, " +
          "ranges with min < max, positive limits, control_hz <= 1000, at most 32 keep-out zones, a policy that " +
          "never gets less strict as severity rises. Errors: 422 `invalid_safety_profile` listing every problem. " +
          "Takes effect on every instance within a second. Needs the owner or an `admin` key.",
        security: SECURITY,
        params: RobotIdParams,
        body: ProfileBodySchema,
        response: {
          200: RobotProfileResponseSchema,
          422: PROBLEM("invalid_safety_profile: every problem with its JSON Pointer."),
        },
      },
    },
    async (request) => {
      const invalid = request.validationError as (Error & { validationContext?: string }) | undefined;
      if (invalid !== undefined && invalid.validationContext !== "body") throw invalid;
      const customerId = customerOf(request.principal);
      const { robot_id } = request.params;
      const body: unknown = request.body;
      if (body === null || typeof body !== "object" || Array.isArray(body)) {
        throw errors.invalidSafetyProfile([{ in: "body", path: "", message: "must be a JSON object" }]);
      }
      const r = resolveProfile(body);
      if (!r.ok) throw errors.invalidSafetyProfile(r.errors);
      const stored = body as Record<string, unknown>;
      const before = (await repo.getRobot(customerId, robot_id))?.profile ?? null;
      await repo.upsertProfile(customerId, robot_id, stored);
      await service.profileChanged(customerId, robot_id);
      await platform.audit.recordRequest(request, {
        action: before === null ? "safety_profile.create" : "safety_profile.update",
        targetType: "robot",
        targetId: robot_id,
        customerId,
        // Field names only: the limits themselves are the customer's configuration, not audit material.
        details: {
          fields: Object.keys(stored).sort(),
          ...(before === null ? {} : { changed: changedKeys(before, stored) }),
        },
      });
      return {
        robot_id,
        source: "custom" as const,
        defaults: "global",
        applies_to: { model: null, unnorm_key: null },
        profile: apiProfile(r.profile),
        stored,
        emergency_stop: stopOf(await service.stopOf(customerId, robot_id)),
      };
    },
  );

  app.delete(
    "/v1/robots/:robot_id/safety-profile",
    {
      onRequest: admin,
      schema: {
        tags: ["safety"],
        summary: "Remove a robot's safety profile",
        description:
          "The robot goes back to the defaults of its model's embodiment. 204 when a profile was removed, 404 " +
          "`not_found` when the robot had none. Needs the owner or an `admin` key.",
        security: SECURITY,
        params: RobotIdParams,
        response: { 204: { type: "null", description: "Removed." }, 404: PROBLEM("No custom profile.") },
      },
    },
    async (request, reply) => {
      const customerId = customerOf(request.principal);
      const { robot_id } = request.params;
      const had = await repo.deleteProfile(customerId, robot_id);
      if (!had) throw errors.notFound("Safety profile");
      await service.profileChanged(customerId, robot_id);
      await platform.audit.recordRequest(request, {
        action: "safety_profile.delete",
        targetType: "robot",
        targetId: robot_id,
        customerId,
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/v1/robots/:robot_id/clear-stop",
    {
      onRequest: admin,
      schema: {
        tags: ["safety"],
        summary: "Clear a robot's emergency stop",
        description:
          "After an `emergency_stop` the robot's requests are refused with 409 `robot_stopped` until its owner " +
          "clears the stop here. Clearing also forgets the robot's previous action (motion restarts from rest). " +
          "Answers `was_stopped: false` when the robot was not stopped. Needs the owner or an `admin` key.",
        security: SECURITY,
        params: RobotIdParams,
        response: { 200: ClearStopResponseSchema },
      },
    },
    async (request) => {
      const customerId = customerOf(request.principal);
      const { robot_id } = request.params;
      const stop = await service.stopOf(customerId, robot_id);
      const cleared = await service.clearStop(customerId, robot_id);
      request.log.info({ robot_id, cleared }, "emergency stop cleared");
      return { robot_id, was_stopped: cleared || stop !== undefined, stop: stopOf(stop) };
    },
  );

  app.get(
    "/v1/safety/incidents",
    {
      onRequest: reader,
      schema: {
        tags: ["safety"],
        summary: "Safety incidents",
        description:
          "One row per violation found on an action the service returned, newest first. Filters: robot_id, " +
          "severity and type (comma-separated lists), a time range [from, to). `limit` default 50, max 500; pass " +
          "`next_cursor` back as `cursor`. Rows are written in batches and appear within about a second.",
        security: SECURITY,
        querystring: IncidentQuery,
        response: { 200: IncidentPageSchema },
      },
    },
    async (request) => {
      const customerId = customerOf(request.principal);
      const page = await listIncidentPage(repo, customerId, request.query);
      return { data: page.items.map(incidentView), next_cursor: page.nextCursor };
    },
  );

  app.get(
    "/v1/safety/summary",
    {
      onRequest: reader,
      schema: {
        tags: ["safety"],
        summary: "Incident counts",
        description:
          "Incident counts by type, severity and robot over [from, to) (default: the last 24 hours), optionally for " +
          "one robot.",
        security: SECURITY,
        querystring: SummaryQuery,
        response: { 200: SummarySchema },
      },
    },
    async (request) => {
      const customerId = customerOf(request.principal);
      const q = request.query;
      const to = queryTime(q.to, "/to") ?? new Date(platform.now());
      // The default window starts no earlier than the first storable instant (to may be in year 1).
      const from = queryTime(q.from, "/from") ?? new Date(Math.max(to.getTime() - 86_400_000, FIRST_INSTANT));
      if (!(from.getTime() < to.getTime())) {
        throw errors.invalidRequest([{ in: "query", path: "/from", message: "must be before to" }]);
      }
      const s = await repo.summary(customerId, { robotId: q.robot_id, from, to });
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        robot_id: q.robot_id ?? null,
        total: s.total,
        by_type: s.byType,
        by_severity: s.bySeverity,
        by_robot: s.byRobot,
      };
    },
  );
};

/**
 * A `from`/`to` query time. The schema checks the date-time format, but a year outside 0001-9999
 * (year 0000 is valid ISO 8601) is one PostgreSQL refuses in a timestamptz parameter: the query
 * would fail with a 500.
 */
/**
 * One page of incidents for the query of `GET /v1/safety/incidents` (also `/admin/safety/incidents`,
 * `customerId` null for every customer): 400 `invalid_request` for a malformed cursor or time.
 */
export async function listIncidentPage(
  repo: SafetyRepo,
  customerId: string | null,
  q: Static<typeof IncidentQuery>,
): Promise<IncidentPage> {
  try {
    return await repo.listIncidents(
      customerId,
      {
        robotId: q.robot_id,
        severity: splitList(q.severity),
        type: splitList(q.type),
        from: queryTime(q.from, "/from"),
        to: queryTime(q.to, "/to"),
      },
      { limit: q.limit, cursor: q.cursor },
    );
  } catch (e) {
    if (e instanceof InvalidCursorError) {
      throw errors.invalidRequest([{ in: "query", path: "/cursor", message: "is not a cursor from this API" }]);
    }
    throw e;
  }
}

/** An incident as the incident routes show it. */
export function incidentView(i: StoredIncident) {
  return {
    id: i.id,
    at: i.at.toISOString(),
    robot_id: i.robotId,
    inference_id: i.inferenceId,
    type: i.violationType,
    severity: i.severity,
    action_taken: i.actionTaken,
    measured: i.measured,
    limit: i.limit,
    step: i.step,
    message: i.message,
  };
}

function queryTime(v: string | undefined, path: string): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  const year = d.getUTCFullYear();
  if (Number.isNaN(d.getTime()) || year < 1 || year > 9999) {
    throw errors.invalidRequest([{ in: "query", path, message: "must be a date-time in the years 0001-9999" }]);
  }
  return d;
}

/** Top-level fields added, removed or given another value. */
function changedKeys(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => canonical(before[k]) !== canonical(after[k])).sort();
}

/** JSON with object keys sorted (jsonb gives them back in its own order). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "undefined";
}

function splitList(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = v
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  return parts.length === 0 ? undefined : parts;
}
