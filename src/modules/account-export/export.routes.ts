import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Principal } from "../../platform/auth.ts";
import type { AccountExportRow } from "../../platform/db/schema/index.ts";
import { errors } from "../../platform/errors.ts";
import type { Platform } from "../../platform/platform.ts";
import {
  ArchiveSchema,
  ExportJobSchema,
  type ExportJobView,
  ExportParams,
  ExportQueuedSchema,
} from "./export.schemas.ts";
import type { ExportService } from "./export.service.ts";

export interface ExportRouteOptions {
  readonly platform: Platform;
  readonly service: ExportService;
  readonly dir: string;
}

const SECURITY: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKeyHeader: [] }];
const PROBLEM = (description: string) => ({ $ref: "Problem#", description });
const iso = (d: Date | null) => (d === null ? null : d.toISOString());

function isExpired(job: AccountExportRow, now: number): boolean {
  return (
    job.status === "expired" || (job.status === "done" && job.expiresAt !== null && job.expiresAt.getTime() <= now)
  );
}

export function jobView(job: AccountExportRow, now: number): ExportJobView {
  const expired = isExpired(job, now);
  return {
    id: job.id,
    status: expired ? "expired" : (job.status as ExportJobView["status"]),
    progress: job.progress,
    created_at: job.createdAt.toISOString(),
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    expires_at: iso(job.expiresAt),
    size_bytes: job.sizeBytes,
    error: job.error,
    download_url: job.status === "done" && !expired ? `/v1/account/export/${job.id}/download` : null,
  };
}

/** The requester: the user for sessions, the key for API keys. */
function isRequester(job: AccountExportRow, p: Principal): boolean {
  if (p.kind === "api_key") return p.apiKeyId !== null && job.createdByApiKeyId === p.apiKeyId;
  return p.userId !== null && job.createdByUserId === p.userId;
}

const WHO =
  " Account owner sessions and API keys with the `admin` scope only (a member's session is 403); another " +
  "customer's export id is 404.";

/** `POST /v1/account/export`, `GET /v1/account/export/{id}`, `GET /v1/account/export/{id}/download`. */
export const exportRoutes: FastifyPluginAsyncTypebox<ExportRouteOptions> = async (app, { platform, service, dir }) => {
  const auth = platform.auth.require({ scopes: ["admin"] });
  const principalOf = (p: Principal | null): Principal => {
    if (p === null) throw errors.unauthorized();
    return p;
  };

  app.post(
    "/v1/account/export",
    {
      onRequest: auth,
      schema: {
        tags: ["account"],
        summary: "Export everything stored about the account",
        description:
          "Starts an export of the account's data (GDPR Art. 15 access and Art. 20 portability) as a background " +
          "job and answers 202 at once. Follow it at `GET /v1/account/export/{id}`; when `status` is `done`, " +
          "`download_url` gives a `.tar.gz` of NDJSON files (profile, members, API key metadata, inference logs, " +
          "safety incidents, robot profiles, feedback, usage, invoices, context metadata, ...; docs/privacy.md lists " +
          "them) plus the stored camera images under `images/` (consent `store_images`), which " +
          "only the requesting user (or API key) may download, until `expires_at` (24 h by default). One export " +
          "at a time per account: while one is queued or running, another request is 409 `export_in_progress` " +
          "naming it." +
          WHO,
        security: SECURITY,
        response: {
          202: ExportQueuedSchema,
          "4XX": PROBLEM("Problem: auth (401/403), an export already queued or running (409 export_in_progress)."),
        },
      },
    },
    async (request, reply) => {
      const p = principalOf(request.principal);
      const out = await service.request({
        customerId: p.customerId,
        userId: p.kind === "user" ? p.userId : null,
        apiKeyId: p.kind === "api_key" ? p.apiKeyId : null,
      });
      if (!out.ok) throw errors.exportInProgress(out.active?.id);
      await platform.audit.recordRequest(request, {
        action: "account.export.request",
        targetType: "account_export",
        targetId: out.job.id,
        customerId: p.customerId,
      });
      reply.code(202).header("location", `/v1/account/export/${out.job.id}`);
      return jobView(out.job, platform.now());
    },
  );

  app.get(
    "/v1/account/export/:id",
    {
      onRequest: auth,
      schema: {
        tags: ["account"],
        summary: "An export's progress",
        description:
          "Status and rows written per section; when done, `download_url`, `size_bytes` and `expires_at`. After " +
          "`expires_at` the status reads `expired`." +
          WHO,
        security: SECURITY,
        params: ExportParams,
        response: { 200: ExportJobSchema, "4XX": PROBLEM("Problem: auth (401/403), unknown export (404).") },
      },
    },
    async (request) => {
      const p = principalOf(request.principal);
      const job = await service.get(p.customerId, request.params.id);
      if (job === undefined) throw errors.notFound("Export");
      return jobView(job, platform.now());
    },
  );

  app.get(
    "/v1/account/export/:id/download",
    {
      onRequest: auth,
      schema: {
        tags: ["account"],
        summary: "Download a finished export",
        description:
          "The archive (`application/gzip`, a tar of NDJSON files, stored images under `images/` and manifest.json), " +
          "streamed from disk. Only the " +
          "user whose session requested the export (or the API key that requested it) may download it (403 " +
          "otherwise), any number of times until `expires_at`; then 410 `export_expired`. Not finished yet or " +
          "failed: 409 `export_not_ready`." +
          WHO,
        security: SECURITY,
        params: ExportParams,
        response: {
          200: { description: "The archive.", content: { "application/gzip": { schema: ArchiveSchema } } },
          "4XX": PROBLEM(
            "Problem: auth (401/403, or not the requester), unknown export (404), not done (409 export_not_ready), expired (410 export_expired).",
          ),
        },
      },
    },
    async (request, reply) => {
      const p = principalOf(request.principal);
      const job = await service.get(p.customerId, request.params.id);
      if (job === undefined) throw errors.notFound("Export");
      if (!isRequester(job, p)) {
        throw errors.forbidden("Only the user (or API key) that requested this export may download it.");
      }
      if (isExpired(job, platform.now())) throw errors.exportExpired();
      if (job.status !== "done" || job.filePath === null) throw errors.exportNotReady(job.status);
      const file = path.join(dir, job.filePath);
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch {
        // The row says done but this instance has no file (DATA_DIR/exports not shared between instances).
        throw errors.notFound("Export archive");
      }
      await service.markDownloaded(job.id);
      await platform.audit.recordRequest(request, {
        action: "account.export.download",
        targetType: "account_export",
        targetId: job.id,
        customerId: p.customerId,
        details: { size_bytes: size },
      });
      const day = job.createdAt.toISOString().slice(0, 10);
      return reply
        .type("application/gzip")
        .header("content-length", size)
        .header("content-disposition", `attachment; filename="account-export-${day}-${job.id.slice(0, 8)}.tar.gz"`)
        .header("cache-control", "no-store")
        .send(createReadStream(file));
    },
  );
};
