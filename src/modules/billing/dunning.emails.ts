import type { Tier } from "../../platform/auth.ts";
import type { EmailMessage } from "../../platform/email.ts";

/**
 * Billing emails to the account owner: payment failed (with the hosted invoice link and the
 * grace deadline), payment needs authentication, payment recovered, subscription canceled, and
 * downgraded to free. Links are Stripe's hosted invoice pages (validated https URLs) or built from
 * PUBLIC_BASE_URL; every value placed in HTML is escaped.
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

function message(
  kind: string,
  to: string,
  title: string,
  paragraphs: readonly string[],
  action?: { label: string; url: string },
): EmailMessage {
  const textParts = action === undefined ? paragraphs : [...paragraphs, `${action.label}:\n${action.url}`];
  return {
    kind,
    to,
    subject: `${PRODUCT}: ${title.toLowerCase()}`,
    text: `${textParts.join("\n\n")}\n\n-- \n${PRODUCT}\n`,
    html: layout(title, paragraphs, action),
  };
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const portalHint = (base: string) =>
  `Manage billing from your account (${base}) or through the API: GET ${base}/v1/billing/portal.`;

export function paymentFailedEmail(
  to: string,
  input: { hostedInvoiceUrl: string | null; graceUntil: number | null; tier: Tier; publicBaseUrl: string },
): EmailMessage {
  const paragraphs = [
    "We could not collect the payment for your subscription. Stripe will retry the card automatically.",
    input.graceUntil === null
      ? "Please update your payment method or pay the invoice."
      : `Your ${input.tier} plan stays active until ${day(input.graceUntil)} (UTC). If the invoice is still unpaid then, the account moves to the free plan; your data and keys are kept.`,
    portalHint(input.publicBaseUrl),
  ];
  return message(
    "billing_payment_failed",
    to,
    "Payment failed",
    paragraphs,
    input.hostedInvoiceUrl === null ? undefined : { label: "Pay the invoice", url: input.hostedInvoiceUrl },
  );
}

export function paymentActionRequiredEmail(
  to: string,
  input: { hostedInvoiceUrl: string | null; publicBaseUrl: string },
): EmailMessage {
  return message(
    "billing_payment_action_required",
    to,
    "Confirm your payment",
    [
      "Your bank asks you to confirm the payment for your subscription (for example with 3-D Secure).",
      "Open the invoice to complete the payment.",
      portalHint(input.publicBaseUrl),
    ],
    input.hostedInvoiceUrl === null ? undefined : { label: "Confirm the payment", url: input.hostedInvoiceUrl },
  );
}

export function paymentRecoveredEmail(to: string, input: { tier: Tier }): EmailMessage {
  return message("billing_payment_recovered", to, "Payment received", [
    "Thank you: the outstanding payment went through.",
    `Your account is on the ${input.tier} plan.`,
  ]);
}

export function subscriptionCanceledEmail(to: string, input: { publicBaseUrl: string }): EmailMessage {
  return message("billing_subscription_canceled", to, "Subscription canceled", [
    "Your subscription has ended and the account is now on the free plan. Your data, keys and per-account settings are kept.",
    `To subscribe again: POST ${input.publicBaseUrl}/v1/billing/checkout.`,
  ]);
}

export function downgradedEmail(
  to: string,
  input: { reason: "grace_expired" | "unpaid" | "paused" | "other"; publicBaseUrl: string },
): EmailMessage {
  const why =
    input.reason === "grace_expired"
      ? "The invoice was still unpaid at the end of the grace period."
      : input.reason === "unpaid"
        ? "The subscription is unpaid after every payment retry."
        : input.reason === "paused"
          ? "The subscription is paused."
          : "The subscription no longer covers a paid plan.";
  return message("billing_downgraded", to, "Moved to the free plan", [
    `${why} The account now has the free plan's limits; your data, keys and per-account settings are kept.`,
    `Pay the open invoice or update the payment method to get the paid plan back. ${portalHint(input.publicBaseUrl)}`,
  ]);
}
