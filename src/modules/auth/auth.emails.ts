import type { EmailMessage } from "../../platform/email.ts";

/**
 * Text and HTML templates of the account emails. Links are built from PUBLIC_BASE_URL by the
 * caller, never from a request's Host header. Every value placed in HTML is escaped.
 */
const PRODUCT = "VLA Inference API";

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function layout(title: string, paragraphs: readonly string[], action?: { label: string; url: string }): string {
  const body = paragraphs.map((p) => `<p style="margin:0 0 16px">${escapeHtml(p)}</p>`).join("\n");
  const button =
    action === undefined
      ? ""
      : `<p style="margin:24px 0"><a href="${escapeHtml(action.url)}" style="background:#1f6feb;color:#fff;padding:10px 18px;border-radius:6px;text-decoration:none">${escapeHtml(action.label)}</a></p>
<p style="margin:0 0 16px;font-size:13px;color:#555">Or paste this link into your browser:<br><a href="${escapeHtml(action.url)}">${escapeHtml(action.url)}</a></p>`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;line-height:1.5;color:#222;max-width:560px;margin:0 auto;padding:24px">
<h1 style="font-size:20px;margin:0 0 16px">${escapeHtml(title)}</h1>
${body}
${button}
<p style="margin:32px 0 0;font-size:12px;color:#888">${PRODUCT}</p>
</body></html>
`;
}

function text(paragraphs: readonly string[]): string {
  return `${paragraphs.join("\n\n")}\n\n-- \n${PRODUCT}\n`;
}

export function verificationEmail(to: string, link: string, token: string, apiBase: string): EmailMessage {
  const title = "Confirm your email address";
  const intro = [
    "Welcome! Please confirm that this address belongs to you.",
    "The link is valid for 48 hours and works once.",
  ];
  return {
    kind: "verify_email",
    to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: text([
      ...intro,
      `Open this link:\n${link}`,
      `Or confirm through the API:\ncurl -X POST ${apiBase}/auth/verify-email/confirm -H 'content-type: application/json' -d '{"token":"${token}"}'`,
      "If you did not create an account, ignore this message.",
    ]),
    html: layout(title, [...intro, "If you did not create an account, ignore this message."], {
      label: "Confirm email",
      url: link,
    }),
  };
}

export function passwordResetEmail(to: string, link: string, token: string, apiBase: string): EmailMessage {
  const title = "Reset your password";
  const intro = [
    "Someone (hopefully you) asked to reset the password of this account.",
    "The link is valid for 1 hour and works once. Resetting signs out every session.",
  ];
  return {
    kind: "password_reset",
    to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: text([
      ...intro,
      `Open this link:\n${link}`,
      `Or reset through the API:\ncurl -X POST ${apiBase}/auth/password-reset/confirm -H 'content-type: application/json' -d '{"token":"${token}","new_password":"..."}'`,
      "If you did not ask for this, ignore this message: your password stays as it is.",
    ]),
    html: layout(title, [...intro, "If you did not ask for this, ignore this message: your password stays as it is."], {
      label: "Choose a new password",
      url: link,
    }),
  };
}

export function passwordChangedEmail(to: string, how: "changed" | "reset", resetUrl: string): EmailMessage {
  const title = "Your password was changed";
  const paragraphs = [
    how === "reset"
      ? "The password of your account was reset with an emailed link. Every session was signed out."
      : "The password of your account was changed. Every other session was signed out.",
    `If this was not you, reset your password now at ${resetUrl} and contact support.`,
  ];
  return {
    kind: "password_changed",
    to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: text(paragraphs),
    html: layout(title, paragraphs),
  };
}

export function accountDeletedEmail(to: string, customerDeleted: boolean): EmailMessage {
  const title = "Your account was deleted";
  const paragraphs = [
    customerDeleted
      ? "Your user account and your organisation's data (API keys, logs, usage) were permanently deleted, as you asked."
      : "Your user account was permanently deleted, as you asked. Your organisation's data stays with its other members.",
    "This is the last message we send to this address.",
  ];
  return {
    kind: "account_deleted",
    to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: text(paragraphs),
    html: layout(title, paragraphs),
  };
}
