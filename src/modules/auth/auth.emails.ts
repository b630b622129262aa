import type { EmailMessage } from "../../platform/email.ts";
import { emailLayout as layout, EMAIL_PRODUCT as PRODUCT } from "../../platform/email-layout.ts";

/**
 * Text and HTML templates of the account emails. Links are built from PUBLIC_BASE_URL by the
 * caller, never from a request's Host header. Every value placed in HTML is escaped.
 */

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
