import { type Static, Type } from "typebox";

/** Wire schemas of the account export routes (docs/privacy.md, "Export"). */

export const EXPORT_STATUSES = ["queued", "running", "done", "failed", "expired"] as const;

const EXAMPLE_ID = "6a1f4a0e-2b7c-4c1d-9d0e-0b5e3e1c2a77";
const nullableTime = (description: string) =>
  Type.Union([Type.String({ format: "date-time" }), Type.Null()], { description });

const EXAMPLE_DONE = {
  id: EXAMPLE_ID,
  status: "done",
  progress: { profile: 1, members: 2, api_keys: 3, inference_logs: 120_000, safety_incidents: 14 },
  created_at: "2026-12-05T10:00:00.000Z",
  started_at: "2026-12-05T10:00:00.120Z",
  finished_at: "2026-12-05T10:00:41.900Z",
  expires_at: "2026-12-06T10:00:41.900Z",
  size_bytes: 9_482_113,
  error: null,
  download_url: `/v1/account/export/${EXAMPLE_ID}/download`,
};

export const ExportJobSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    status: Type.Enum([...EXPORT_STATUSES], {
      description:
        "queued, running, done (download until expires_at), failed (see error; request a new export), expired (the archive was deleted).",
    }),
    progress: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), {
      description:
        "Rows (for `images`: files) written so far per section (file name without .ndjson); complete when done.",
    }),
    created_at: Type.String({ format: "date-time" }),
    started_at: nullableTime("When the job started writing."),
    finished_at: nullableTime("When the job finished (done or failed)."),
    expires_at: nullableTime("Done: the archive can be downloaded until then (EXPORT_TTL_HOURS, default 24 h)."),
    size_bytes: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: "The archive's size." }),
    error: Type.Union([Type.String(), Type.Null()], { description: "Why a failed export failed." }),
    download_url: Type.Union([Type.String(), Type.Null()], {
      description:
        "Done and not expired: the path to GET the archive (only the user or API key that requested it may).",
    }),
  },
  { additionalProperties: false, examples: [EXAMPLE_DONE] },
);
export type ExportJobView = Static<typeof ExportJobSchema>;

export const ExportQueuedSchema = Type.Object(ExportJobSchema.properties, {
  additionalProperties: false,
  description: "Accepted: the job is queued; follow it at GET /v1/account/export/{id}.",
  examples: [
    {
      ...EXAMPLE_DONE,
      status: "queued",
      progress: {},
      started_at: null,
      finished_at: null,
      expires_at: null,
      size_bytes: null,
      download_url: null,
    },
  ],
});

export const ExportParams = Type.Object({
  id: Type.String({ format: "uuid", description: "The export's id.", examples: [EXAMPLE_ID] }),
});

export const ArchiveSchema = Type.String({
  format: "binary",
  description:
    "A gzip-compressed tar of NDJSON files (one JSON object per line), stored camera images under images/, and manifest.json; docs/privacy.md lists the files and fields.",
  examples: ["(binary .tar.gz)"],
});
