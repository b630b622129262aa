import { type Static, Type } from "typebox";
import {
  ANONYMIZATION_LEVELS,
  CONSENT_TIERS,
  MAX_RETENTION_DAYS,
  MIN_RETENTION_DAYS,
  PERMISSIONS,
} from "./consent-policy.ts";

/** Wire schemas of the consent routes (docs/privacy.md). */

const EXAMPLE_CUSTOMER = "5b0e7a2c-3f4d-4e1a-9c7b-2d8e6f1a0b3c";
const EXAMPLE_USER = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

const tier = Type.Enum([...CONSENT_TIERS], {
  description:
    "none: hashes and metrics only; basic: + instruction text; analytics: + embeddings; research: + images and training use.",
});
const anonymization = Type.Enum([...ANONYMIZATION_LEVELS], {
  description: "none, partial or full. partial and full: instruction text is never stored, whatever the permissions.",
});
const retentionDays = Type.Integer({
  minimum: MIN_RETENTION_DAYS,
  maximum: MAX_RETENTION_DAYS,
  description: `Days stored data is kept, ${MIN_RETENTION_DAYS}..${MAX_RETENTION_DAYS}; default per tier (none 30, basic 90, analytics 365, research 730).`,
});
const policyVersion = Type.String({
  pattern: "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
  description: "Id of the privacy-policy text the customer agreed to (letters, digits, . _ : -; at most 64).",
  examples: ["2026-12-01"],
});
const permissionFlag = (what: string) => Type.Optional(Type.Boolean({ description: what }));

export const PermissionsInput = Type.Object(
  {
    store_instructions: permissionFlag("Keep the instruction text of inferences (the SHA-256 is always kept)."),
    store_images: permissionFlag(
      "Keep camera images in the object store (research tier; never under anonymization full). Withdrawing it deletes them at the next retention run.",
    ),
    store_embeddings: permissionFlag(
      "Keep each image's thumbnail-8x8-v1 embedding (64 numbers from an 8x8 grayscale thumbnail, not a learned embedding) in context_metadata (analytics and research; never under anonymization full).",
    ),
    use_for_training: permissionFlag("Use stored data to train models (research tier)."),
  },
  {
    additionalProperties: false,
    description:
      "Narrow the tier's permissions: a permission left out follows the tier, `false` turns it off. Asking for one the " +
      "tier does not give is 422 (the tier is never widened).",
    examples: [{ store_instructions: false }],
  },
);

const PermissionsOutput = Type.Object(
  Object.fromEntries(PERMISSIONS.map((p) => [p, Type.Boolean()])) as Record<
    (typeof PERMISSIONS)[number],
    ReturnType<typeof Type.Boolean>
  >,
  { additionalProperties: false },
);

const nullableDate = (description: string) =>
  Type.Union([Type.String({ format: "date-time" }), Type.Null()], { description });

export const ConsentBody = Type.Object(
  {
    tier,
    permissions: Type.Optional(PermissionsInput),
    anonymization: Type.Optional(anonymization),
    retention_days: Type.Optional(retentionDays),
    expires_at: Type.Optional(
      nullableDate("When this consent lapses (must be in the future); after it, `none` applies."),
    ),
    policy_version: policyVersion,
  },
  {
    additionalProperties: false,
    examples: [
      { tier: "basic", policy_version: "2026-12-01" },
      {
        tier: "analytics",
        permissions: { store_instructions: false },
        retention_days: 180,
        expires_at: "2027-12-31T00:00:00Z",
        policy_version: "2026-12-01",
      },
      { tier: "none", policy_version: "2026-12-01" },
    ],
  },
);
export type ConsentBodyType = Static<typeof ConsentBody>;

export const ConsentPatchBody = Type.Object(
  {
    tier: Type.Optional(tier),
    permissions: Type.Optional(PermissionsInput),
    anonymization: Type.Optional(anonymization),
    retention_days: Type.Optional(retentionDays),
    expires_at: Type.Optional(nullableDate("New expiry (future), or null for none.")),
    policy_version: Type.Optional(policyVersion),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      "Only the fields given change. Omitted permissions and retention_days keep their values while the tier stays " +
      "and take the new tier's defaults when it changes.",
    examples: [{ retention_days: 30 }, { tier: "research", policy_version: "2026-12-01" }],
  },
);
export type ConsentPatchBodyType = Static<typeof ConsentPatchBody>;

export const ConsentVersionSchema = Type.Object(
  {
    version: Type.Integer({ minimum: 1, description: "1, 2, ... per customer; every change appends one." }),
    tier,
    permissions: PermissionsOutput,
    anonymization,
    retention_days: Type.Integer(),
    expires_at: nullableDate("When it lapses; null: never."),
    granted_at: Type.String({ format: "date-time" }),
    granted_by_user_id: Type.Union([Type.String(), Type.Null()], {
      description: "The user whose session wrote it; null when an API key with the admin scope did.",
    }),
    granted_by_api_key_id: Type.Union([Type.String(), Type.Null()]),
    ip: Type.Union([Type.String(), Type.Null()], { description: "Client IP of the request that wrote it." }),
    policy_version: Type.String(),
    withdrawn: Type.Boolean({ description: "A withdrawal (tier none)." }),
  },
  { additionalProperties: false },
);
export type ConsentVersionView = Static<typeof ConsentVersionSchema>;

const EXAMPLE_VERSION: ConsentVersionView = {
  version: 2,
  tier: "basic",
  permissions: { store_instructions: true, store_images: false, store_embeddings: false, use_for_training: false },
  anonymization: "none",
  retention_days: 90,
  expires_at: null,
  granted_at: "2026-12-05T10:00:00.000Z",
  granted_by_user_id: EXAMPLE_USER,
  granted_by_api_key_id: null,
  ip: "203.0.113.7",
  policy_version: "2026-12-01",
  withdrawn: false,
};

export const ConsentVersionResponse = Type.Object(ConsentVersionSchema.properties, {
  additionalProperties: false,
  examples: [EXAMPLE_VERSION],
});

export const ConsentViewSchema = Type.Object(
  {
    customer_id: Type.String({ format: "uuid" }),
    at: Type.String({ format: "date-time", description: "The instant this answer is for." }),
    state: Type.Enum(["default", "active", "expired", "withdrawn"], {
      description:
        "default: no version yet (CONSENT_DEFAULT_TIER applies); active; expired (behaves as none); withdrawn.",
    }),
    tier: Type.Enum([...CONSENT_TIERS], { description: "The tier in effect (none when expired or withdrawn)." }),
    permissions: { ...PermissionsOutput, description: "What is in effect: the tier's, narrowed by the version." },
    anonymization,
    retention_days: Type.Integer(),
    instruction_text_stored: Type.Boolean({
      description:
        "Whether instruction text is stored now: the consent's store_instructions and the operator's LOG_INSTRUCTIONS.",
    }),
    record: Type.Union([ConsentVersionSchema, Type.Null()], { description: "The version in effect; null: none yet." }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        customer_id: EXAMPLE_CUSTOMER,
        at: "2026-12-05T12:00:00.000Z",
        state: "active",
        tier: "basic",
        permissions: EXAMPLE_VERSION.permissions,
        anonymization: "none",
        retention_days: 90,
        instruction_text_stored: true,
        record: EXAMPLE_VERSION,
      },
    ],
  },
);
export type ConsentViewType = Static<typeof ConsentViewSchema>;

export const ConsentHistorySchema = Type.Object(
  {
    data: Type.Array(ConsentVersionSchema),
    next_cursor: Type.Union([Type.String(), Type.Null()], { description: "Pass as `cursor` for older versions." }),
  },
  { additionalProperties: false, examples: [{ data: [EXAMPLE_VERSION], next_cursor: null }] },
);

export const AtQuery = Type.Object(
  {
    at: Type.Optional(
      Type.String({
        format: "date-time",
        description: "Answer for this past instant instead of now: the version granted last before it, judged at it.",
        examples: ["2026-11-01T00:00:00Z"],
      }),
    ),
  },
  { additionalProperties: false },
);

export const HistoryQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 64, description: "`next_cursor` of the previous page." })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  },
  { additionalProperties: false },
);

export const CustomerParams = Type.Object({
  customer_id: Type.String({ format: "uuid", description: "The customer whose consent this is." }),
});
