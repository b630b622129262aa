import type { Tier } from "../../platform/auth.ts";
import type { EmailMessage } from "../../platform/email.ts";
import { emailLayout as layout, EMAIL_PRODUCT as PRODUCT } from "../../platform/email-layout.ts";

/**
 * Billing emails to the account owner: payment failed (with the hosted invoice link and the
 * grace deadline), payment needs authentication, payment recovered, subscription canceled, and
 * downgraded to free. Links are Stripe's hosted invoice pages (validated https URLs) or built from
 * PUBLIC_BASE_URL; every value placed in HTML is escaped.
 */

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
