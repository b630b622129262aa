import { type Static, Type } from "typebox";
import { ROBOT_ID_PATTERN } from "../inference/inference.schemas.ts";

const ScopeSchema = Type.Union([Type.Literal("inference"), Type.Literal("admin")], {
  description:
    "`inference`: run models, stream, send feedback on the customer's inferences (a robot-bound key: its robot's), read models. `admin`: everything the account owner may do, including managing keys.",
});

const NameSchema = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: "\\S",
  description: "A label for people: which robot, site or service uses the key.",
  examples: ["warehouse-arm-3"],
});

const robotIdDefault = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: ROBOT_ID_PATTERN,
  description:
    "Binds the key to this robot: requests that name no robot act for it, and naming another is 403 `robot_mismatch`.",
  examples: ["arm-3"],
});
const modelDefault = Type.String({
  minLength: 1,
  maxLength: 128,
  description:
    "Model used when a request names none (GET /v1/models: a service model or your own registered one); a request " +
    "may name another.",
  examples: ["mock-openvla-7b"],
});
const unnormKeyDefault = Type.String({
  minLength: 1,
  maxLength: 128,
  description:
    "unnorm_key used when a request names none and uses the key's model (the default model when `model` is null); it must be one of that model's.",
  examples: ["bridge_orig"],
});
/** PATCH: a value sets the default, null clears it. */
const clearable = (s: typeof robotIdDefault, description: string) =>
  Type.Union([s, Type.Null()], { description: `${description} null clears it.` });

export const KeyIdParams = Type.Object({
  key_id: Type.String({ format: "uuid", description: "The key's id (not the key itself)." }),
});

export const CreateKeyBody = Type.Object(
  {
    name: NameSchema,
    scopes: Type.Optional(
      Type.Array(ScopeSchema, {
        minItems: 1,
        maxItems: 2,
        uniqueItems: true,
        description: 'Defaults to ["inference"].',
      }),
    ),
    expires_at: Type.Optional(
      Type.String({
        format: "date-time",
        description: "RFC 3339 time after which the key stops working; omit for no expiry.",
      }),
    ),
    robot_id: Type.Optional(robotIdDefault),
    model: Type.Optional(modelDefault),
    unnorm_key: Type.Optional(unnormKeyDefault),
  },
  {
    additionalProperties: false,
    examples: [
      { name: "warehouse-arm-3", scopes: ["inference"], expires_at: "2027-06-30T00:00:00Z" },
      { name: "arm-3", robot_id: "arm-3", model: "mock-openvla-7b", unnorm_key: "bridge_orig" },
    ],
  },
);
export type CreateKeyBody = Static<typeof CreateKeyBody>;

export const UpdateKeyBody = Type.Object(
  {
    name: Type.Optional(NameSchema),
    scopes: Type.Optional(
      Type.Array(ScopeSchema, {
        minItems: 1,
        maxItems: 2,
        uniqueItems: true,
        description: "New scopes; every instance applies them within a second.",
      }),
    ),
    robot_id: Type.Optional(clearable(robotIdDefault, "Binds the key to this robot.")),
    model: Type.Optional(clearable(modelDefault, "The key's default model.")),
    unnorm_key: Type.Optional(clearable(unnormKeyDefault, "The key's default unnorm_key (of its model).")),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ name: "arm-3 (spare)" }, { scopes: ["inference"] }, { robot_id: "arm-4", unnorm_key: null }],
  },
);
export type UpdateKeyBody = Static<typeof UpdateKeyBody>;

export const RotateKeyBody = Type.Object(
  {
    grace_seconds: Type.Integer({
      minimum: 0,
      maximum: 604_800,
      description: "How long the old key keeps working beside the new one (0 to 7 days); 0 ends it at once.",
    }),
  },
  { additionalProperties: false, examples: [{ grace_seconds: 3600 }] },
);
export type RotateKeyBody = Static<typeof RotateKeyBody>;

const NullableTime = (description: string) =>
  Type.Union([Type.String({ format: "date-time" }), Type.Null()], { description });

const keyProperties = {
  id: Type.String({ format: "uuid" }),
  name: Type.String(),
  display_prefix: Type.String({
    description: "`vla_live_` and the first 4 characters of the secret.",
    examples: ["vla_live_7HqX"],
  }),
  scopes: Type.Array(ScopeSchema),
  status: Type.Union(
    [Type.Literal("active"), Type.Literal("expired"), Type.Literal("revoked"), Type.Literal("rotating")],
    {
      description: "`rotating`: replaced, still valid until `revokes_at`.",
    },
  ),
  created_at: Type.String({ format: "date-time" }),
  expires_at: NullableTime("When the key expires; null for never."),
  revokes_at: NullableTime("When a rotating key stops working, or when the key was revoked."),
  replaced_by: Type.Union([Type.String({ format: "uuid" }), Type.Null()], {
    description: "The key that replaced this one by rotation.",
  }),
  last_used_at: NullableTime("Last use, at minute resolution, updated in batches about once a minute."),
  robot_id: Type.Union([Type.String(), Type.Null()], {
    description: "The robot the key is bound to (its requests act for it, no other); null: not bound.",
  }),
  model: Type.Union([Type.String(), Type.Null()], {
    description: "Default model of the key's requests; null: the server's default model.",
  }),
  unnorm_key: Type.Union([Type.String(), Type.Null()], {
    description: "Default unnorm_key of the key's requests (for its model); null: the model's default.",
  }),
};

const keyExample = {
  id: "0b6f8a8e-3c1d-4f3a-9d7e-2f1b5c6d7e8f",
  name: "warehouse-arm-3",
  display_prefix: "vla_live_7HqX",
  scopes: ["inference"],
  status: "active",
  created_at: "2026-11-26T20:00:00.000Z",
  expires_at: null,
  revokes_at: null,
  replaced_by: null,
  last_used_at: "2026-11-26T21:14:00.000Z",
  robot_id: "arm-3",
  model: null,
  unnorm_key: "bridge_orig",
};

export const ApiKeySchema = Type.Object(keyProperties, {
  description: "An API key, never with its secret.",
  examples: [keyExample],
});
export type ApiKeyView = Static<typeof ApiKeySchema>;

export const ApiKeyListSchema = Type.Object({ data: Type.Array(ApiKeySchema) }, { examples: [{ data: [keyExample] }] });

export const CreatedKeySchema = Type.Object(
  {
    ...keyProperties,
    key: Type.String({ description: "The full key. Shown only in this response: store it now." }),
  },
  { examples: [{ ...keyExample, key: "vla_live_7HqXz3...", last_used_at: null }] },
);

export const RotatedKeySchema = Type.Object(
  {
    api_key: CreatedKeySchema,
    rotated: ApiKeySchema,
  },
  {
    description: "The new key (with its secret, once) and the old one, now rotating.",
    examples: [
      {
        api_key: {
          ...keyExample,
          id: "7c2e9d14-6b3a-4f0e-8a1d-5e4f3c2b1a09",
          display_prefix: "vla_live_Q4mT",
          created_at: "2026-11-27T09:00:00.000Z",
          last_used_at: null,
          key: "vla_live_Q4mTz3...",
        },
        rotated: {
          ...keyExample,
          status: "rotating",
          revokes_at: "2026-11-27T10:00:00.000Z",
          replaced_by: "7c2e9d14-6b3a-4f0e-8a1d-5e4f3c2b1a09",
        },
      },
    ],
  },
);
