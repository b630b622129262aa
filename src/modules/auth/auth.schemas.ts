import { type Static, Type } from "typebox";
import { PASSWORD_MAX, PASSWORD_MIN } from "./password-policy.ts";

/**
 * Request and response schemas of /auth. Every request body is `additionalProperties: false`:
 * fields such as `is_superuser`, `tier`, quotas or Stripe ids are rejected with 422, never
 * silently accepted.
 */
const Email = Type.String({
  format: "email",
  minLength: 3,
  maxLength: 254,
  description: "Email address; compared trimmed and case-insensitively.",
  examples: ["ada@example.com"],
});

const NewPassword = Type.String({
  minLength: PASSWORD_MIN,
  maxLength: PASSWORD_MAX,
  description: `${PASSWORD_MIN} to ${PASSWORD_MAX} characters, not one of the most common passwords.`,
  examples: ["correct horse battery staple"],
});

/** Passwords being checked (not set) are bounded only to keep hashing cheap. */
const AnyPassword = Type.String({ minLength: 1, maxLength: 1024, examples: ["correct horse battery staple"] });

const OpaqueToken = Type.String({
  minLength: 16,
  maxLength: 512,
  pattern: "^[A-Za-z0-9_-]+$",
  description: "The opaque token, base64url.",
  examples: ["q3Zl0lU8yJ1kq0d3mW2o6bXo9kLrj5q5c2Yc0Wc1XQ8"],
});

export const RegisterBody = Type.Object(
  {
    email: Email,
    password: NewPassword,
    full_name: Type.Optional(Type.String({ maxLength: 200, examples: ["Ada Lovelace"] })),
    company: Type.Optional(Type.String({ maxLength: 200, examples: ["Analytical Robotics Ltd"] })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        email: "ada@example.com",
        password: "correct horse battery staple",
        full_name: "Ada Lovelace",
        company: "Analytical Robotics Ltd",
      },
    ],
  },
);
export type RegisterBody = Static<typeof RegisterBody>;

export const ProfileSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    email: Type.String(),
    full_name: Type.Union([Type.String(), Type.Null()]),
    customer_id: Type.String({ format: "uuid", description: "The account (customer) this user belongs to." }),
    company: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([Type.Literal("owner"), Type.Literal("member")], {
      description: "owner: scopes inference + admin; member: inference.",
    }),
    tier: Type.Union([Type.Literal("free"), Type.Literal("pro"), Type.Literal("enterprise")]),
    email_verified: Type.Boolean(),
    is_superuser: Type.Boolean(),
    created_at: Type.String({ format: "date-time" }),
  },
  {
    additionalProperties: false,
    description: "The user's profile; never includes the password hash.",
    examples: [
      {
        id: "0b8f6f8e-5d0e-4d52-9a55-3f1f3c7d9a10",
        email: "ada@example.com",
        full_name: "Ada Lovelace",
        customer_id: "6a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        company: "Analytical Robotics Ltd",
        role: "owner",
        tier: "free",
        email_verified: false,
        is_superuser: false,
        created_at: "2026-11-26T21:00:00.000Z",
      },
    ],
  },
);
export type ProfileSchema = Static<typeof ProfileSchema>;

export const TokenBody = Type.Object(
  {
    grant_type: Type.Optional(Type.Literal("password", { description: "OAuth2 grant type; only `password`." })),
    username: Type.String({
      minLength: 1,
      maxLength: 254,
      description: "The account email.",
      examples: ["ada@example.com"],
    }),
    password: AnyPassword,
    scope: Type.Optional(
      Type.String({ maxLength: 200, description: "Accepted and ignored (scopes follow the role)." }),
    ),
    client_id: Type.Optional(Type.String({ maxLength: 200, description: "Accepted and ignored." })),
    client_secret: Type.Optional(Type.String({ maxLength: 200, description: "Accepted and ignored." })),
  },
  {
    additionalProperties: false,
    examples: [{ grant_type: "password", username: "ada@example.com", password: "correct horse battery staple" }],
  },
);
export type TokenBody = Static<typeof TokenBody>;

export const TokenResponse = Type.Object(
  {
    access_token: Type.String({ description: "JWT (HS256), send as `Authorization: Bearer <token>`." }),
    token_type: Type.Literal("bearer"),
    expires_in: Type.Integer({ description: "Seconds until the access token expires." }),
    refresh_token: Type.String({ description: "Opaque; single use; exchange at POST /auth/refresh." }),
  },
  {
    additionalProperties: false,
    description: "An OAuth2 bearer token pair (RFC 6749 section 5.1).",
    examples: [
      {
        access_token: "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJ0eXAiOiJhY2Nlc3MiLCJ2ZXIiOjB9.c2lnbmF0dXJl",
        token_type: "bearer",
        expires_in: 900,
        refresh_token: "Vt1l6CkqAJp0eTzH3k1zq0nYb8b3b5s0rX4u2FzGg3E",
      },
    ],
  },
);
export type TokenResponse = Static<typeof TokenResponse>;

export const RefreshBody = Type.Object(
  { refresh_token: OpaqueToken },
  { additionalProperties: false, examples: [{ refresh_token: "Vt1l6CkqAJp0eTzH3k1zq0nYb8b3b5s0rX4u2FzGg3E" }] },
);
export type RefreshBody = Static<typeof RefreshBody>;

export const UpdateMeBody = Type.Object(
  { full_name: Type.Union([Type.String({ maxLength: 200 }), Type.Null()], { examples: ["Ada King"] }) },
  { additionalProperties: false, examples: [{ full_name: "Ada King" }] },
);
export type UpdateMeBody = Static<typeof UpdateMeBody>;

export const ChangePasswordBody = Type.Object(
  { current_password: AnyPassword, new_password: NewPassword },
  {
    additionalProperties: false,
    examples: [{ current_password: "correct horse battery staple", new_password: "a much longer passphrase 2026" }],
  },
);
export type ChangePasswordBody = Static<typeof ChangePasswordBody>;

export const EmailBody = Type.Object(
  { email: Email },
  { additionalProperties: false, examples: [{ email: "ada@example.com" }] },
);
export type EmailBody = Static<typeof EmailBody>;

export const ResetConfirmBody = Type.Object(
  { token: OpaqueToken, new_password: NewPassword },
  {
    additionalProperties: false,
    examples: [{ token: "q3Zl0lU8yJ1kq0d3mW2o6bXo9kLrj5q5c2Yc0Wc1XQ8", new_password: "a much longer passphrase 2026" }],
  },
);
export type ResetConfirmBody = Static<typeof ResetConfirmBody>;

export const TokenOnlyBody = Type.Object(
  { token: OpaqueToken },
  { additionalProperties: false, examples: [{ token: "q3Zl0lU8yJ1kq0d3mW2o6bXo9kLrj5q5c2Yc0Wc1XQ8" }] },
);
export type TokenOnlyBody = Static<typeof TokenOnlyBody>;

export const DeleteMeBody = Type.Object(
  { password: AnyPassword },
  { additionalProperties: false, examples: [{ password: "correct horse battery staple" }] },
);
export type DeleteMeBody = Static<typeof DeleteMeBody>;

export const AcceptedSchema = Type.Object(
  { status: Type.Literal("accepted"), message: Type.String() },
  {
    additionalProperties: false,
    description: "Accepted; the same answer whatever the outcome.",
    examples: [
      {
        status: "accepted",
        message: "If an account exists for this address, we have sent it a link to reset the password.",
      },
    ],
  },
);

export const EmptyResponse = Type.Null({ description: "No content." });
