import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { Type } from "typebox";
import { isAppError } from "../../platform/errors.ts";
import type { AuthService } from "./auth.service.ts";

/**
 * The two pages emailed links open: `GET /verify-email?token=` and `GET /reset-password?token=`.
 * Plain HTML forms, no script (the CSP forbids it), posting back form-encoded. Opening a link
 * changes nothing (mail scanners prefetch links); only the button does. A cross-site post gains
 * nothing: it needs the secret token. Tokens in the URL do not leak through Referer
 * (`Referrer-Policy: no-referrer`) and the pages load nothing from elsewhere.
 */
const TokenQuery = Type.Object({ token: Type.Optional(Type.String({ maxLength: 512 })) });
const EXAMPLE_TOKEN = "q3Zl0lU8yJ1kq0d3mW2o6bXo9kLrj5q5c2Yc0Wc1XQ8";
const VerifyForm = Type.Object(
  { token: Type.String({ maxLength: 512 }) },
  { additionalProperties: false, examples: [{ token: EXAMPLE_TOKEN }] },
);
const ResetForm = Type.Object(
  { token: Type.String({ maxLength: 512 }), new_password: Type.String({ maxLength: 1024 }) },
  { additionalProperties: false, examples: [{ token: EXAMPLE_TOKEN, new_password: "a much longer passphrase 2026" }] },
);
/** The response schema of a page; the example is the page's main content, shortened. */
const Html = (title: string, main: string) =>
  Type.String({
    description: "An HTML page.",
    examples: [
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>` +
        `<body><main><h1>${title}</h1>${main}</main></body></html>\n`,
    ],
  });
const HIDDEN_TOKEN = `<input type="hidden" name="token" value="${EXAMPLE_TOKEN}">`;
const RESET_FORM =
  `<form method="post" action="/reset-password">${HIDDEN_TOKEN}` +
  `<label>New password (8 to 128 characters) <input type="password" name="new_password" required></label> ` +
  `<button type="submit">Set the new password</button></form>`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(reply: FastifyReply, status: number, title: string, body: string): FastifyReply {
  return reply
    .code(status)
    .header("referrer-policy", "no-referrer")
    .header("cache-control", "no-store")
    .type("text/html; charset=utf-8")
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
        `<title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>\n`,
    );
}

function message(e: unknown): { status: number; text: string } {
  if (isAppError(e) && e.status < 500) {
    const field = e.errors?.[0];
    return { status: e.status, text: field === undefined ? (e.detail ?? e.title) : field.message };
  }
  throw e;
}

export const authPages: FastifyPluginAsyncTypebox<{ service: AuthService }> = async (app, { service }) => {
  const formOnly = async (request: FastifyRequest, reply: FastifyReply) => {
    const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
    if (type !== "application/x-www-form-urlencoded") {
      return page(reply, 415, "Unsupported request", "<p>Submit the form on this page.</p>");
    }
  };

  app.get(
    "/verify-email",
    {
      schema: {
        tags: ["auth"],
        summary: "Email verification page",
        description: "The page the verification email links to: one button that confirms the address.",
        querystring: TokenQuery,
        produces: ["text/html"],
        response: {
          200: Html(
            "Confirm your email address",
            `<form method="post" action="/verify-email">${HIDDEN_TOKEN}<button type="submit">Confirm my email address</button></form>`,
          ),
        },
      },
    },
    async (request, reply) => {
      const token = request.query.token ?? "";
      return page(
        reply,
        200,
        "Confirm your email address",
        `<form method="post" action="/verify-email"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
          `<button type="submit">Confirm my email address</button></form>`,
      );
    },
  );

  app.post(
    "/verify-email",
    {
      preValidation: formOnly,
      schema: {
        tags: ["auth"],
        summary: "Email verification page: confirm",
        description: "Form post of the verification page; the JSON API equivalent is POST /auth/verify-email/confirm.",
        consumes: ["application/x-www-form-urlencoded"],
        body: VerifyForm,
        produces: ["text/html"],
        response: { 200: Html("Email address confirmed", "<p>Thank you. You can close this page.</p>") },
      },
    },
    async (request, reply) => {
      try {
        await service.confirmVerification(request.body.token);
        return page(reply, 200, "Email address confirmed", "<p>Thank you. You can close this page.</p>");
      } catch (e) {
        const m = message(e);
        return page(reply, m.status, "This link does not work", `<p>${escapeHtml(m.text)}</p>`);
      }
    },
  );

  const resetForm = (token: string, error?: string) =>
    `${error === undefined ? "" : `<p role="alert">${escapeHtml(error)}</p>`}` +
    `<form method="post" action="/reset-password"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
    `<label>New password (8 to 128 characters) <input type="password" name="new_password" autocomplete="new-password" minlength="8" maxlength="128" required></label> ` +
    `<button type="submit">Set the new password</button></form>`;

  app.get(
    "/reset-password",
    {
      schema: {
        tags: ["auth"],
        summary: "Password reset page",
        description: "The page the reset email links to: a form for the new password.",
        querystring: TokenQuery,
        produces: ["text/html"],
        response: { 200: Html("Choose a new password", RESET_FORM) },
      },
    },
    async (request, reply) => page(reply, 200, "Choose a new password", resetForm(request.query.token ?? "")),
  );

  app.post(
    "/reset-password",
    {
      preValidation: formOnly,
      schema: {
        tags: ["auth"],
        summary: "Password reset page: set the password",
        description: "Form post of the reset page; the JSON API equivalent is POST /auth/password-reset/confirm.",
        consumes: ["application/x-www-form-urlencoded"],
        body: ResetForm,
        produces: ["text/html"],
        response: {
          200: Html(
            "Password changed",
            "<p>Your password was changed and every session was signed out. Sign in with the new password.</p>",
          ),
        },
      },
    },
    async (request, reply) => {
      try {
        await service.confirmPasswordReset(request.body.token, request.body.new_password);
        return page(
          reply,
          200,
          "Password changed",
          "<p>Your password was changed and every session was signed out. Sign in with the new password.</p>",
        );
      } catch (e) {
        const m = message(e);
        if (m.status === 422) {
          return page(
            reply,
            422,
            "Choose a new password",
            resetForm(request.body.token, `${m.text.charAt(0).toUpperCase()}${m.text.slice(1)}.`),
          );
        }
        return page(reply, m.status, "This link does not work", `<p>${escapeHtml(m.text)}</p>`);
      }
    },
  );
};
