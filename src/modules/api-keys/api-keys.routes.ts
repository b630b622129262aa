import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { ModuleOptions } from "../../platform/module.ts";
import {
  ApiKeyListSchema,
  ApiKeySchema,
  type ApiKeyView,
  CreatedKeySchema,
  CreateKeyBody,
  KeyIdParams,
  RotatedKeySchema,
  RotateKeyBody,
  UpdateKeyBody,
} from "./api-keys.schemas.ts";
import type { ApiKeysService, KeyView } from "./api-keys.service.ts";

/** A session (JWT) or an API key, in any accepted header. */
const SECURITY: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

/** The names of the fields a request set, for the audit log (never their values). */
const givenFields = (body: object) =>
  Object.entries(body)
    .filter(([, v]) => v !== undefined)
    .map(([k]) => k)
    .sort();

export function toView(v: KeyView): ApiKeyView {
  const r = v.row;
  return {
    id: r.id,
    name: r.name,
    display_prefix: r.displayPrefix,
    scopes: r.scopes as ApiKeyView["scopes"],
    status: v.status,
    created_at: r.createdAt.toISOString(),
    expires_at: iso(r.expiresAt),
    revokes_at: iso(r.revokedAt),
    replaced_by: r.replacedById,
    last_used_at: iso(r.lastUsedAt),
    robot_id: r.robotId,
    model: r.model,
    unnorm_key: r.unnormKey,
  };
}

/** Key management for the account owner (JWT) or a key with the `admin` scope. */
export function apiKeysRoutes(service: ApiKeysService): FastifyPluginAsyncTypebox<ModuleOptions> {
  return async (app, { platform }) => {
    const admin = platform.auth.require({ scopes: ["admin"] });
    const tags = ["api-keys"];

    app.get(
      "/v1/api-keys",
      {
        onRequest: admin,
        schema: {
          tags,
          summary: "List API keys",
          description:
            "Every key of the caller's customer, newest first, with status and last use. Secrets are never shown again.",
          security: SECURITY,
          response: { 200: ApiKeyListSchema },
        },
      },
      async (request) => {
        const principal = request.principal as NonNullable<typeof request.principal>;
        return { data: (await service.list(principal.customerId)).map(toView) };
      },
    );

    app.post(
      "/v1/api-keys",
      {
        onRequest: admin,
        schema: {
          tags,
          summary: "Create an API key",
          description:
            "Returns the full key once (`key`). Default scope `inference`. `robot_id`, `model` and `unnorm_key` are " +
            "the key's inference defaults: a request without them uses the key's; `robot_id` binds the key to that robot " +
            "(another robot is 403 `robot_mismatch`). An unknown model or an unnorm_key the model lacks is 422.",
          security: SECURITY,
          body: CreateKeyBody,
          response: { 201: CreatedKeySchema },
        },
      },
      async (request, reply) => {
        const principal = request.principal as NonNullable<typeof request.principal>;
        const { name, scopes, expires_at, robot_id, model, unnorm_key } = request.body;
        const created = await service.create(principal, {
          name: name.trim(),
          scopes,
          expiresAt: expires_at === undefined ? undefined : new Date(expires_at),
          robotId: robot_id,
          model,
          unnormKey: unnorm_key,
        });
        await platform.audit.recordRequest(request, {
          action: "api_key.create",
          targetType: "api_key",
          targetId: created.view.row.id,
          customerId: principal.customerId,
          details: { scopes: created.view.row.scopes, fields: givenFields(request.body) },
        });
        return reply.code(201).send({ ...toView(created.view), key: created.key });
      },
    );

    app.patch(
      "/v1/api-keys/:key_id",
      {
        onRequest: admin,
        schema: {
          tags,
          summary: "Rename an API key, change its scopes or its inference defaults",
          description:
            "A scope or default change takes effect on every instance within a second. `robot_id`, `model`, " +
            "`unnorm_key`: a value sets the default, null clears it; checked as they will stand (a new model must have the key's unnorm_key).",
          security: SECURITY,
          params: KeyIdParams,
          body: UpdateKeyBody,
          response: { 200: ApiKeySchema },
        },
      },
      async (request) => {
        const principal = request.principal as NonNullable<typeof request.principal>;
        const { name, scopes, robot_id, model, unnorm_key } = request.body;
        const updated = await service.update(principal.customerId, request.params.key_id, {
          name: name?.trim(),
          scopes,
          robotId: robot_id,
          model,
          unnormKey: unnorm_key,
        });
        await platform.audit.recordRequest(request, {
          action: "api_key.update",
          targetType: "api_key",
          targetId: updated.row.id,
          customerId: principal.customerId,
          details: {
            fields: givenFields(request.body),
            ...(scopes === undefined ? {} : { scopes: updated.row.scopes }),
          },
        });
        return toView(updated);
      },
    );

    app.delete(
      "/v1/api-keys/:key_id",
      {
        onRequest: admin,
        schema: {
          tags,
          summary: "Revoke an API key",
          description:
            "Immediate and final; every instance refuses the key within a second. Revoking twice is harmless.",
          security: SECURITY,
          params: KeyIdParams,
          response: { 200: ApiKeySchema },
        },
      },
      async (request) => {
        const principal = request.principal as NonNullable<typeof request.principal>;
        const revoked = await service.revoke(principal.customerId, request.params.key_id);
        await platform.audit.recordRequest(request, {
          action: "api_key.revoke",
          targetType: "api_key",
          targetId: revoked.row.id,
          customerId: principal.customerId,
        });
        return toView(revoked);
      },
    );

    app.post(
      "/v1/api-keys/:key_id/rotate",
      {
        onRequest: admin,
        schema: {
          tags,
          summary: "Rotate an API key",
          description:
            "Creates a new key with the same name, scopes and expiry, and returns it once. The old key keeps working for `grace_seconds`, then stops.",
          security: SECURITY,
          params: KeyIdParams,
          body: RotateKeyBody,
          response: { 201: RotatedKeySchema },
        },
      },
      async (request, reply) => {
        const principal = request.principal as NonNullable<typeof request.principal>;
        const r = await service.rotate(principal, request.params.key_id, request.body.grace_seconds);
        await platform.audit.recordRequest(request, {
          action: "api_key.rotate",
          targetType: "api_key",
          targetId: r.old.row.id,
          customerId: principal.customerId,
          details: { new_key_id: r.created.row.id, grace_seconds: request.body.grace_seconds },
        });
        return reply.code(201).send({ api_key: { ...toView(r.created), key: r.key }, rotated: toView(r.old) });
      },
    );
  };
}
